"""ONNX export of an encoder task's packaged model (torch.onnx's dynamo exporter) and ONNX Runtime inference.

The graph takes ``input_ids`` and ``attention_mask`` (int64, dynamic batch and sequence axes) and
ends in the task's post-processing (:mod:`tuneproof.export.heads`). :class:`OnnxRunner` runs it in
the same length-sorted batches as the torch path and hands back the task's own outputs, so the
task's ``evaluate`` and ``format_prediction`` read them unchanged.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from tuneproof.errors import ExportError
from tuneproof.export.heads import ExportHead, HeadModule, head_for
from tuneproof.export.info import ExportInfo
from tuneproof.tasks._inference import config_value
from tuneproof.tasks.base import Features, Task
from tuneproof.train.features import inference_batches, pad_collate

GRAPH_FILE = "model.onnx"
# The exporter traces with these; the axes are declared dynamic, so any batch and length work.
_TRACE_BATCH, _TRACE_LENGTH = 2, 8


def export_graph(
    model: nn.Module, task: Task, path: Path, max_length: int, opset: int, head: ExportHead | None = None
) -> ExportHead:
    """Write ``model`` (fp32, eval mode) with the task's head as one ONNX file at ``path``."""
    head = head or head_for(task)
    scale = config_value(model, "tuneproof_target") or {"mean": 0.0, "std": 1.0}
    wrapped = HeadModule(model.float().eval(), head.activation, float(scale["mean"]), float(scale["std"]))
    wrapped.eval()
    vocab = int(getattr(getattr(model, "config", None), "vocab_size", 100) or 100)
    ids = torch.randint(0, vocab, (_TRACE_BATCH, _TRACE_LENGTH), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    batch = torch.export.Dim("batch", min=1, max=65536)
    seq = torch.export.Dim("sequence", min=2, max=max(max_length, _TRACE_LENGTH + 1))
    axes = {0: batch, 1: seq}
    try:
        with warnings.catch_warnings(), _quiet("torch.onnx"), torch.no_grad():
            warnings.simplefilter("ignore")  # exporter chatter (torchvision ops absent, axis renames)
            program = torch.onnx.export(
                wrapped,
                (ids, mask),
                dynamo=True,
                input_names=["input_ids", "attention_mask"],
                output_names=[head.output],
                dynamic_shapes={"input_ids": axes, "attention_mask": axes},
                opset_version=opset,
                optimize=True,
                verbose=False,
            )
    except Exception as exc:  # the exporter raises many types; the user needs which model and why
        raise ExportError(f"torch.onnx.export could not export the {task.name} model: {exc}") from exc
    assert program is not None  # dynamo=True always returns the program
    program.save(str(path))
    return head


class _quiet:
    """Silence one library logger for the duration of the export (it logs each pass it runs)."""

    def __init__(self, name: str) -> None:
        self.logger = logging.getLogger(name)

    def __enter__(self) -> None:
        self.level = self.logger.level
        self.logger.setLevel(logging.ERROR)

    def __exit__(self, *exc: object) -> None:
        self.logger.setLevel(self.level)


class OnnxRunner:
    """An ONNX Runtime session on an export folder's graph, giving the task's outputs."""

    def __init__(self, folder: Path, info: ExportInfo, threads: int | None = None) -> None:
        import onnxruntime as ort

        if info.model_file is None or info.output is None:
            raise ExportError(f"{folder}: {info.format} is not an ONNX export")
        path = folder / info.model_file
        if not path.is_file():
            raise ExportError(f"{folder} has no {info.model_file}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.inter_op_num_threads = 1
        options.log_severity_level = 3  # errors only: the quantised graph's notes are not for users
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.info = info

    def raw(self, features: Features, pad_id: int, batch_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """(feature indices, graph output) per length-sorted batch."""
        collate = pad_collate(pad_id)
        lengths = np.array([len(f["input_ids"]) for f in features])
        out = []
        for idx in inference_batches(lengths, batch_size):
            b = collate([{"input_ids": features[i]["input_ids"]} for i in idx])
            feeds = {
                "input_ids": b["input_ids"].numpy().astype(np.int64),
                "attention_mask": b["attention_mask"].numpy().astype(np.int64),
            }
            (result,) = self.session.run([self.info.output], feeds)
            out.append((np.asarray(idx), np.asarray(result)))
        return out

    def predict(self, task: Task, features: Features, pad_id: int, batch_size: int) -> np.ndarray:
        """The task's outputs in the order of ``features``, with columns in the export's label order."""
        kind = self.info.kind
        batches = self.raw(features, pad_id, batch_size)
        if kind == "score":
            scores = np.zeros(len(features), dtype=np.float64)
            for idx, result in batches:
                scores[idx] = result.reshape(len(idx))
            return scores
        if kind == "probabilities":
            probs = np.zeros((len(features), len(self.info.labels)), dtype=np.float64)
            for idx, result in batches:
                probs[idx] = result.reshape(len(idx), -1)
            return probs
        if kind == "token_probabilities":
            from tuneproof.tasks.token_classification import TokenClassificationTask

            if not isinstance(task, TokenClassificationTask):
                raise ExportError(f"per-token outputs need a token_classification task, not {task.name}")
            sentences = np.empty(len(features), dtype=object)
            for idx, result in batches:
                for row, i in enumerate(idx):
                    sentences[i] = task.tagged_sentence(features[i], result[row])
            return sentences
        raise ExportError(f"{self.info.format}: unknown output kind {kind!r}")


def reorder_columns(outputs: np.ndarray, have: Sequence[str], want: Sequence[str]) -> np.ndarray:
    """Per-text outputs ``[n, k]`` with their columns moved from the ``have`` label order to ``want``.

    A label the export does not name makes the export unusable: it is an error, not a zero column.
    """
    missing = [lab for lab in want if lab not in have]
    if missing:
        raise ExportError(f"the export has no output for {', '.join(missing)}")
    return outputs[:, [list(have).index(lab) for lab in want]]


def session_outputs_info(path: Path) -> dict[str, Any]:
    """The graph's input and output names and shapes as ONNX Runtime sees them (for the report)."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return {
        "inputs": {i.name: [str(d) for d in i.shape] for i in s.get_inputs()},
        "outputs": {o.name: [str(d) for d in o.shape] for o in s.get_outputs()},
    }


__all__ = ["GRAPH_FILE", "OnnxRunner", "export_graph", "reorder_columns", "session_outputs_info"]
