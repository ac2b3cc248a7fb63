"""``predict`` and ``serve`` on an export (``--backend onnx`` / ``onnx-int8``) instead of the torch model.

The task object is the same one the torch path uses, so requests, features and the response format
are unchanged; only the forward pass runs in ONNX Runtime. The export's own label list (and
thresholds) are what its outputs are read with: the verification scored exactly that reading.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np

from tuneproof.errors import RunFolderError
from tuneproof.evidence import ModelInfo
from tuneproof.export.info import ExportInfo, ExportVerification
from tuneproof.export.onnx import OnnxRunner
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.base import Task, TaskEnv
from tuneproof.tasks.registry import get_task

Backend = Literal["torch", "onnx", "onnx-int8"]
BACKENDS: tuple[str, ...] = ("torch", "onnx", "onnx-int8")


def load_onnx(
    run_dir: Path, backend: str, protocol: Protocol, info: ModelInfo
) -> tuple[Task, OnnxRunner, Any, ModelInfo]:
    """(task, runner, tokenizer, model info) of the run's ``backend`` export.

    The info's ``deployable`` is the run's and the export's release together: an export whose gates
    failed is refused by ``serve`` like a rejected run, unless ``--allow-rejected``.
    """
    from transformers import AutoTokenizer

    folder = run_dir / "exports" / backend
    if not (folder / ExportInfo.FILE).is_file():
        raise RunFolderError(
            f"{run_dir} has no {backend} export ({folder} is missing); make it with "
            f"`tuneproof export {run_dir} --format {backend}`"
        )
    export = ExportInfo.read(folder)
    verification = ExportVerification.read(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    task = get_task(protocol, TaskEnv(tokenizer=tokenizer, precision="fp32"))
    task.labels = list(export.labels)
    if export.thresholds is not None:
        from tuneproof.tasks.multilabel import MultilabelTask

        if isinstance(task, MultilabelTask):
            task.thresholds = np.array([export.thresholds[lab] for lab in task.labels], dtype=np.float64)
    runner = OnnxRunner(folder, export)
    served = info.model_copy(
        update={
            "labels": list(export.labels),
            "precision": "fp32",
            "deployable": info.deployable and verification.released,
        }
    )
    return task, runner, tokenizer, served


__all__ = ["BACKENDS", "Backend", "load_onnx"]
