"""int8 versions of an exported ONNX graph, as the protocol's ``export.int8`` asks.

Two methods, both without calibration data (the test split stays for verification alone, and the
training split is not in an export's inputs): ``blockwise`` (:mod:`tuneproof.export.quantize_blockwise`,
the default) and ONNX Runtime's ``dynamic`` quantisation. Either can keep nodes in fp32
(:mod:`tuneproof.export.int8_nodes`) and store the word embeddings as int8.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx

from tuneproof.errors import ExportError
from tuneproof.export.int8_nodes import resolve_keep_fp32
from tuneproof.protocol.schema import Int8Spec

INT8_FILE = "model.int8.onnx"


def describe(spec: Int8Spec, kept: list[str]) -> str:
    """The ``quantization`` line of the export's ``tuneproof_export.json``."""
    if spec.method == "blockwise":
        text = (
            f"onnxruntime MatMulNBits: int8 weights and activations per block of {spec.block_size} "
            "(MatMul); Gemm in fp32"
        )
    else:
        text = "onnxruntime dynamic: int8 weights per channel (MatMul, Gemm), activations per batch"
    text += (
        "; word embeddings 8-bit, one scale per table" if spec.embeddings == "int8" else "; embeddings fp32"
    )
    return text + (f"; kept in fp32: {', '.join(kept)}" if kept else "")


def quantize_int8(source: Path, target: Path, spec: Int8Spec | None = None) -> tuple[str, list[str]]:
    """Write the int8 version of the fp32 graph ``source`` to ``target``; (its description, the
    weight nodes kept in fp32 by ``spec.keep_fp32``)."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    spec = spec or Int8Spec()
    try:
        with tempfile.TemporaryDirectory(prefix="tuneproof-int8-") as scratch:
            prepared = Path(scratch) / "prepared.onnx"
            # ONNX Runtime's recommended pre-pass (graph optimisation, shape inference); its symbolic
            # shape inference cannot follow the exporter's dynamic axes, and the ONNX one suffices.
            quant_pre_process(source, prepared, skip_symbolic_shape=True)
            graph = onnx.load(prepared).graph
            kept = resolve_keep_fp32(graph, spec.keep_fp32)
            if spec.method == "blockwise":
                from tuneproof.export.quantize_blockwise import quantize_blockwise

                weights = Path(scratch) / "weights.onnx" if spec.embeddings == "int8" else target
                quantize_blockwise(prepared, weights, spec.block_size, kept)
                if spec.embeddings == "int8":
                    _dynamic(weights, target, ["Gather"], [], _word_embeddings(graph))
            else:
                ops = ["MatMul", "Gemm"] + (["Gather"] if spec.embeddings == "int8" else [])
                words = set(_word_embeddings(graph))
                other_gathers = [n.name for n in graph.node if n.op_type == "Gather" and n.name not in words]
                _dynamic(prepared, target, ops, kept + other_gathers, None)
    except ExportError:
        raise
    except Exception as exc:  # onnxruntime raises plain Exceptions with the op that failed
        raise ExportError(f"ONNX Runtime could not quantise {source.name}: {exc}") from exc
    return describe(spec, kept), kept


def _word_embeddings(graph: onnx.GraphProto) -> list[str]:
    """The Gather that looks ``input_ids`` up in a constant table: the word embeddings."""
    constants = {i.name for i in graph.initializer}
    return [
        n.name
        for n in graph.node
        if n.op_type == "Gather" and n.input[0] in constants and n.input[1] == "input_ids"
    ]


def _dynamic(
    source: Path, target: Path, ops: list[str], exclude: list[str], include: list[str] | None
) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(
        source,
        target,
        op_types_to_quantize=ops,
        per_channel=True,
        weight_type=QuantType.QInt8,
        nodes_to_exclude=exclude,
        nodes_to_quantize=include,
    )


__all__ = ["INT8_FILE", "describe", "quantize_int8"]
