"""int8 quantisation of an exported graph (``export.int8``) on a tiny model built in code: the nodes the
protocol keeps in fp32 are fp32 in the written graph, the rest are int8, and the export is re-verified."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pandas as pd
import pytest
from transformers import AutoTokenizer

from helpers import toy_reviews
from tuneproof.errors import ExportError, ProtocolError
from tuneproof.export.heads import head_for
from tuneproof.export.info import ExportInfo
from tuneproof.export.int8_nodes import fp32_weight_nodes, head_nodes, weight_nodes
from tuneproof.export.onnx import OnnxRunner, export_graph
from tuneproof.export.quantize import quantize_int8
from tuneproof.export.reverify import IDENTICAL, reverify
from tuneproof.protocol.loader import parse_protocol
from tuneproof.protocol.schema import ExportSpec, Int8Spec
from tuneproof.tasks.registry import get_task
from tuneproof.train.model_source import resolve_model

pytestmark = pytest.mark.integration  # one graph export, ~5 s of CPU, shared by the module


@pytest.fixture(scope="module")
def graph(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("int8")
    protocol = parse_protocol(
        f"name: t\nmodel: {{source: {tiny_bert}, max_length: 32}}\n"
        "data: {files: [x.jsonl], labels: [neg, pos]}\n"
    )
    task = get_task(protocol)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = task.build_model(resolve_model(protocol.model, d)).eval()
    export_graph(model, task, d / "model.onnx", 32, 18)
    df = pd.DataFrame(toy_reviews(60, seed=4)).assign(row_id=lambda f: [str(i) for i in range(len(f))])
    feats = task.features_for_inference(df, tok)
    torch_out = task.predict(model, feats, tok.pad_token_id, 16, "fp32")
    return {"dir": d, "task": task, "df": df, "feats": feats, "pad": tok.pad_token_id, "torch": torch_out}


def _quantized(
    graph: dict[str, Any], spec: Int8Spec, name: str
) -> tuple[onnx.ModelProto, np.ndarray, list[str]]:
    d: Path = graph["dir"]
    _, kept = quantize_int8(d / "model.onnx", d / name, spec)
    task = graph["task"]
    head = head_for(task)
    info = ExportInfo(
        format="onnx-int8",
        task=task.name,
        kind=head.kind,
        labels=list(task.labels),
        max_length=32,
        output=head.output,
        model_file=name,
        source_model_sha256="-",
    )
    out = OnnxRunner(d, info).predict(task, graph["feats"], graph["pad"], 16)
    return onnx.load(d / name), out, kept


def test_blockwise_keeps_the_named_nodes_and_the_head_in_fp32_and_is_reverified(
    graph: dict[str, Any],
) -> None:
    fp32 = onnx.load(graph["dir"] / "model.onnx").graph
    encoder = [w.name for w in weight_nodes(fp32) if w.op_type == "MatMul"]
    assert len(encoder) == 2 * 6  # two layers of Q, K, V, attention output, two feed-forward
    last_ffn = encoder[-1]
    spec = Int8Spec(method="blockwise", block_size=16, keep_fp32=["head", last_ffn])
    model, out, kept = _quantized(graph, spec, "blockwise.onnx")
    assert kept == [*head_nodes(fp32), last_ffn] and len(head_nodes(fp32)) == 2  # pooler, classifier
    ops = {n.name: n.op_type for n in model.graph.node}
    still_fp32 = set(fp32_weight_nodes(model))
    assert set(kept) <= still_fp32 and ops[last_ffn] == "MatMul"
    # Every other encoder MatMul became an 8-bit MatMulNBits (renamed with its _Q8 suffix).
    assert not (set(encoder) - {last_ffn}) & still_fp32
    nbits = [n for n in model.graph.node if n.op_type == "MatMulNBits"]
    assert len(nbits) == len(encoder) - 1
    assert all(next(a.i for a in n.attribute if a.name == "bits") == 8 for n in nbits)
    assert np.abs(out - graph["torch"]).max() > 0  # it is quantised (an untrained model: tiny logits)...
    np.testing.assert_allclose(out, graph["torch"], atol=0.05)  # ...and close
    _reverified(graph, out)


def test_dynamic_quantisation_keeps_what_it_is_told_and_refuses_unknown_nodes(graph: dict[str, Any]) -> None:
    fp32 = onnx.load(graph["dir"] / "model.onnx").graph
    first = next(w.name for w in weight_nodes(fp32) if w.op_type == "MatMul")
    model, out, kept = _quantized(graph, Int8Spec(method="dynamic", keep_fp32=[first]), "dynamic.onnx")
    assert kept == [first] and fp32_weight_nodes(model) == [first]  # pooler and classifier are int8 here
    # The other 11 encoder MatMuls and the two Gemms (pooler, classifier) run as MatMulInteger.
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 11 + 2
    _reverified(graph, out)
    with pytest.raises(ExportError, match=r"keep_fp32: 'node_nope' is not a MatMul/Gemm node"):
        quantize_int8(graph["dir"] / "model.onnx", graph["dir"] / "x.onnx", Int8Spec(keep_fp32=["node_nope"]))
    assert not (graph["dir"] / "x.onnx").exists()


def test_int8_embeddings_are_stored_in_8_bits(graph: dict[str, Any]) -> None:
    model, out, _ = _quantized(graph, Int8Spec(embeddings="int8"), "emb.onnx")
    words = next(n for n in model.graph.node if n.op_type == "Gather" and "input_ids" in n.input)
    table = {i.name: i for i in model.graph.initializer}[words.input[0]]
    # ONNX Runtime stores a Gather table as uint8 with a zero point, one scale for the whole table.
    assert table.data_type == onnx.TensorProto.UINT8 and table.dims[0] == 5 + 40  # the tiny vocabulary
    np.testing.assert_allclose(out, graph["torch"], atol=0.05)


def _reverified(graph: dict[str, Any], out: np.ndarray) -> None:
    spec = ExportSpec.model_validate(
        {
            "formats": ["onnx-int8"],
            "gates": [
                {"metric": IDENTICAL, "min": 0.5},
                {"metric": "accuracy", "beats": "original", "by": -0.2},
            ],
        }
    )
    v = reverify(graph["task"], graph["df"], graph["torch"], out, spec)
    same = int((out.argmax(1) == graph["torch"].argmax(1)).sum())
    assert v.evaluation["agreement"]["identical_rows"] == same
    assert v.evaluation["model"][IDENTICAL]["value"] == pytest.approx(same / len(out))
    # The tiny model's probabilities sit near 0.5, so how many argmaxes int8 flips depends on the CPU's
    # int8 kernels (all kept on AVX-512, below half on an AVX2 EPYC): the identical-rows gate must
    # follow its own interval's lower bound, and the accuracy gate (-0.2) holds on both.
    low = v.evaluation["model"][IDENTICAL]["low"]
    assert [g.passed for g in v.gates.verdicts] == [low >= 0.5, True]
    assert "original" in v.evaluation["comparisons"]


def test_the_int8_section_is_read_from_the_protocol_and_checked(tiny_bert: Path) -> None:
    base = f"name: t\nmodel: {{source: {tiny_bert}}}\ndata: {{files: [x.jsonl], labels: [a, b]}}\n"
    p = parse_protocol(base + "export: {formats: [onnx-int8], int8: {keep_fp32: [head], block_size: 64}}\n")
    assert p.export is not None and p.export.int8 == Int8Spec(keep_fp32=["head"], block_size=64)
    assert parse_protocol(base + "export: {formats: [onnx-int8]}\n").export.int8.method == "blockwise"  # type: ignore[union-attr]
    with pytest.raises(ProtocolError, match=r"export\.int8\.block_size"):
        parse_protocol(base + "export: {formats: [onnx-int8], int8: {block_size: 48}}\n")
    with pytest.raises(ProtocolError, match=r"export\.int8\.calibration"):
        parse_protocol(base + "export: {formats: [onnx-int8], int8: {calibration: train}}\n")
