"""Load a packaged model and predict: used by `tuneproof predict` and by the HTTP server."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from tuneproof.errors import DataValidationError, Problem, RunFolderError
from tuneproof.evidence import ModelInfo
from tuneproof.protocol import load_protocol
from tuneproof.tasks._inference import bf16_linear_weights
from tuneproof.tasks.base import Task, TaskEnv
from tuneproof.tasks.registry import get_task, task_class


@dataclass
class Predictor:
    task: Task
    model: Any
    tokenizer: Any
    info: ModelInfo
    pii: Any = None  # the protocol's PiiSpec when it asks for inputs to be scrubbed too
    batch_size: int = 64
    runner: Any = None  # an OnnxRunner when predicting with an export (``backend``), else None

    @classmethod
    def load(cls, run_dir: Path, batch_size: int = 64, backend: str = "torch") -> Predictor:
        model_dir = run_dir / "model"
        info_path = model_dir / ModelInfo.FILE
        if not info_path.is_file():
            raise RunFolderError(f"{run_dir} has no packaged model ({info_path} is missing)")
        info = ModelInfo.read(info_path)
        protocol = load_protocol(run_dir / "protocol.source.yaml").protocol
        pii = protocol.pii if protocol.pii is not None and protocol.pii.on_inputs else None
        if backend != "torch":
            from tuneproof.export.backend import load_onnx

            onnx_task, runner, onnx_tokenizer, served = load_onnx(run_dir, backend, protocol, info)
            return cls(onnx_task, None, onnx_tokenizer, served, pii, batch_size, runner)
        tokenizer = task_class(protocol.task).load_packaged_preprocessor(model_dir)
        task = get_task(protocol, TaskEnv(tokenizer=tokenizer, precision=info.precision))
        task.labels = list(info.labels)
        model = task.load_packaged(model_dir)
        model.eval()
        if info.precision == "bf16" and task.predicts_under_autocast:
            model = bf16_linear_weights(model)
        return cls(task, model, tokenizer, info, pii, batch_size)

    @property
    def precision(self) -> str:
        return self.info.precision

    def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        if self.pii is not None:
            from tuneproof.data.pii_step import scrub_inputs

            texts = scrub_inputs(self.pii, texts)
        df = pd.DataFrame(
            {"row_id": [str(i) for i in range(len(texts))], "text": texts, "label": [None] * len(texts)}
        )
        feats = self.task.features_for_inference(df, self.tokenizer)
        pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        if self.runner is not None:
            outputs = self.runner.predict(self.task, feats, pad_id, self.batch_size)
        else:
            with torch.inference_mode():
                outputs = self.task.predict(self.model, feats, pad_id, self.batch_size, self.precision)
        return self.task.format_prediction(self.calibrated(np.asarray(outputs)))

    def calibrated(self, outputs: np.ndarray) -> np.ndarray:
        """The model's probabilities with the run's fitted temperature applied (when it has one),
        whichever backend computed them: the probabilities the evaluation judged and gated."""
        if self.info.temperature is None:
            return outputs
        from tuneproof.evaluate.calibration import apply_temperature

        return apply_temperature(np.asarray(outputs), float(self.info.temperature))

    def predict_images(self, names: list[str], images: list[bytes]) -> list[dict[str, Any]]:
        """Predictions for encoded images (file bytes), each checked and prepared as training data
        were, with the run's temperature as evaluation applied it; ``names`` say which input a
        problem is about. ``tuneproof predict`` and ``serve`` both come here."""
        df = pd.DataFrame({"row_id": [str(i) for i in range(len(images))], "text": names, "image": images})
        feats = self.task.features_for_inference(df, self.tokenizer)
        with torch.inference_mode():
            outputs = self.task.predict(self.model, feats, 0, self.batch_size, self.precision)
        return self.task.format_prediction(self.calibrated(np.asarray(outputs)))


def predict_images(predictor: Predictor, names: list[str], images: list[bytes]) -> list[dict[str, Any]]:
    return predictor.predict_images(names, images)


def read_image_inputs(path: Path) -> list[Path]:
    """An image file, or every image file under a folder (sorted, so the output order is stable)."""
    from tuneproof.data.images import IMAGE_SUFFIXES

    if path.is_file():
        return [path]
    if not path.is_dir():
        raise DataValidationError([Problem(str(path), "no such file or folder")], str(path))
    files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataValidationError([Problem(str(path), "no image files in the folder")], str(path))
    return files


def read_inputs(path: Path, text_field: str = "text") -> list[str]:
    """Texts from JSONL (one object with ``text_field`` per line) or plain text (one per line)."""
    problems: list[Problem] = []
    texts: list[str] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            if path.suffix in (".jsonl", ".json", ".ndjson"):
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    problems.append(Problem(f"{path}:{lineno}", f"malformed JSON: {exc.msg}"))
                    continue
                value = obj.get(text_field) if isinstance(obj, dict) else None
                if not isinstance(value, str):
                    problems.append(Problem(f"{path}:{lineno}", f"needs a string field {text_field!r}"))
                    continue
                texts.append(value)
            else:
                texts.append(line.rstrip("\n"))
    if problems:
        raise DataValidationError(problems, str(path))
    return texts
