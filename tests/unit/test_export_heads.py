"""The exported graph of every encoder task against its torch model, on untrained tiny models:
dynamic batch and sequence axes, the task's head inside the graph, and the protocol's export section."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest
from transformers import AutoTokenizer

from tuneproof.errors import ExportError, ProtocolError
from tuneproof.export.heads import head_for
from tuneproof.export.info import ExportInfo
from tuneproof.export.onnx import OnnxRunner, export_graph
from tuneproof.protocol.check import check_protocol_parts
from tuneproof.protocol.loader import parse_protocol
from tuneproof.tasks.registry import get_task
from tuneproof.train.model_source import resolve_model

# Different lengths in batches of 3: the last batch is smaller and every batch pads to its own length.
TEXTS = [
    "good",
    "the film was great and warm",
    "dull",
    "a very boring plot and the acting was weak",
    "fine",
    "the",
    "stale flat script",
]


def _setup(kind: str, model_dir: Path, labels: str) -> tuple[Any, Any, Any]:
    protocol = parse_protocol(
        f"name: t\ntask: {kind}\nmodel: {{source: {model_dir}, max_length: 32}}\n"
        f"data: {{files: [x.jsonl]{labels}}}\n"
    )
    task = get_task(protocol)
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    return protocol, task, tokenizer


def _export_and_run(task: Any, model: Any, tokenizer: Any, tmp_path: Path) -> tuple[Any, Any]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    head = export_graph(model, task, tmp_path / "model.onnx", 32, 18)
    info = ExportInfo(
        format="onnx",
        task=task.name,
        kind=head.kind,
        labels=list(task.labels),
        max_length=32,
        output=head.output,
        model_file="model.onnx",
        source_model_sha256="-",
    )
    df = pd.DataFrame({"row_id": [str(i) for i in range(len(TEXTS))], "text": TEXTS})
    feats = task.features_for_inference(df, tokenizer)
    pad = tokenizer.pad_token_id
    return OnnxRunner(tmp_path, info).predict(task, feats, pad, 3), task.predict(model, feats, pad, 3, "fp32")


@pytest.mark.integration  # a graph export takes ~5 s of CPU
def test_regression_graph_gives_scores_on_the_target_scale(tiny_bert: Path, tmp_path: Path) -> None:
    protocol, task, tok = _setup("regression", tiny_bert, "")
    task.mean, task.std = 3.5, 2.0  # the packaged model carries its scale; the graph must apply it
    model = task.build_model(resolve_model(protocol.model, tmp_path)).eval()
    onnx_out, torch_out = _export_and_run(task, model, tok, tmp_path)
    assert onnx_out.shape == (len(TEXTS),)
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    assert abs(onnx_out.mean() - 3.5) < 2.0  # not the standardised output


@pytest.mark.integration  # a graph export takes ~5 s of CPU
def test_token_classification_graph_gives_per_word_tag_probabilities(tiny_bert: Path, tmp_path: Path) -> None:
    protocol, task, tok = _setup(
        "token_classification", tiny_bert, ", label_column: tags, labels: [GOOD, BAD]"
    )
    model = task.build_model(resolve_model(protocol.model, tmp_path)).eval()
    onnx_out, torch_out = _export_and_run(task, model, tok, tmp_path)
    for a, b, text in zip(onnx_out, torch_out, TEXTS, strict=True):
        assert a.probs.shape == (len(text.split()), 5) and a.words == text.split()
        np.testing.assert_allclose(a.probs, b.probs, atol=1e-5)
    assert task.tags_of(onnx_out) == task.tags_of(torch_out)


@pytest.mark.integration  # a graph export takes ~5 s of CPU
def test_multilabel_graph_ends_in_a_sigmoid_and_classification_in_a_softmax(
    tiny_bert: Path, tmp_path: Path
) -> None:
    protocol, task, tok = _setup("multilabel", tiny_bert, ", label_column: labels, labels: [a, b, c]")
    model = task.build_model(resolve_model(protocol.model, tmp_path)).eval()
    onnx_out, torch_out = _export_and_run(task, model, tok, tmp_path / "ml")
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    assert not np.allclose(onnx_out.sum(1), 1.0, atol=1e-3)  # independent per label, not a softmax
    protocol, task, tok = _setup("classification", tiny_bert, ", labels: [neg, mid, pos]")
    model = task.build_model(resolve_model(protocol.model, tmp_path)).eval()
    onnx_out, torch_out = _export_and_run(task, model, tok, tmp_path / "cls")
    np.testing.assert_allclose(onnx_out, torch_out, atol=1e-5)
    np.testing.assert_allclose(onnx_out.sum(1), 1.0, atol=1e-5)


def test_a_generative_task_has_no_onnx_head() -> None:
    with pytest.raises(ExportError, match=r"no ONNX export.*merged"):
        head_for(SimpleNamespace(name="sft"))  # type: ignore[arg-type]


def test_the_export_section_is_checked_with_paths(tiny_bert: Path, tmp_path: Path) -> None:
    base = f"name: t\nmodel: {{source: {tiny_bert}}}\ndata: {{files: [x.jsonl], labels: [a, b]}}\n"
    with pytest.raises(ProtocolError, match=r"export\.formats has duplicates"):
        parse_protocol(base + "export: {formats: [onnx, onnx]}\n")
    with pytest.raises(ProtocolError, match=r"export\.formats"):
        parse_protocol(base + "export: {formats: [tflite]}\n")
    path = tmp_path / "p.yaml"
    path.write_text(
        base
        + "export:\n  formats: [onnx]\n  gates:\n    - {metric: acuracy, beats: original, by: -0.01}\n"
        + "    - {metric: identical_predictions, min: 0.99}\n    - {metric: accuracy, beats: torch}\n"
    )
    _, problems, _ = check_protocol_parts(path, read_data=False)
    where = {p.where: p.message for p in problems}
    assert "did you mean 'accuracy'" in where["export.gates[0].metric"]
    assert "baseline 'torch' is not evaluated" in where["export.gates[2].beats"]
    assert "export.gates[1].metric" not in where
