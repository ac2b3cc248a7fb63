"""Which nodes of an exported graph int8 quantisation may touch, and which the protocol keeps in fp32.

``keep_fp32`` names ONNX nodes of the graph ``tuneproof export`` writes, plus the selector ``head``:
every MatMul/Gemm after the encoder's last LayerNormalization (pooler and classifier), found from
the graph's topological order, so it holds for any encoder the exporter traces. A name that is not a
quantisable node of the graph is an error, not a silently full quantisation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import onnx

from tuneproof.errors import ExportError

HEAD = "head"
WEIGHT_OPS = ("MatMul", "Gemm")


@dataclass(frozen=True)
class WeightNode:
    name: str
    op_type: str
    weight: str  # the initializer holding the node's weight matrix


def weight_nodes(graph: onnx.GraphProto) -> list[WeightNode]:
    """MatMul/Gemm nodes whose weight is a constant of the graph, in topological order (the ONNX
    rule for node lists): the only ones a weight quantiser changes."""
    initializers = {i.name for i in graph.initializer}
    return [
        WeightNode(n.name, n.op_type, n.input[1])
        for n in graph.node
        if n.op_type in WEIGHT_OPS and len(n.input) > 1 and n.input[1] in initializers
    ]


def head_nodes(graph: onnx.GraphProto) -> list[str]:
    """Weight nodes after the last LayerNormalization: what the encoder's output goes through."""
    last_norm = max((i for i, n in enumerate(graph.node) if n.op_type == "LayerNormalization"), default=-1)
    names = {n.name for n in graph.node[last_norm + 1 :]}
    return [w.name for w in weight_nodes(graph) if w.name in names]


def resolve_keep_fp32(graph: onnx.GraphProto, keep: Sequence[str]) -> list[str]:
    """The node names ``keep`` (``head`` and node names) stands for, checked against the graph."""
    known = {w.name for w in weight_nodes(graph)}
    out: list[str] = []
    for item in keep:
        names = head_nodes(graph) if item == HEAD else [item]
        if item != HEAD and item not in known:
            hint = ", ".join(sorted(known)[:6])
            raise ExportError(
                f"export.int8.keep_fp32: {item!r} is not a MatMul/Gemm node with constant weights of "
                f"the exported graph (some that are: {hint}, ...)"
            )
        out += [n for n in names if n not in out]
    return out


def fp32_weight_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of MatMul/Gemm nodes of ``model`` that still multiply by an fp32 weight constant."""
    fp32 = {
        i.name for i in model.graph.initializer if i.data_type == onnx.TensorProto.FLOAT and len(i.dims) == 2
    }
    return [w.name for w in weight_nodes(model.graph) if w.weight in fp32]


__all__ = ["HEAD", "WeightNode", "fp32_weight_nodes", "head_nodes", "resolve_keep_fp32", "weight_nodes"]
