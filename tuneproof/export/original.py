"""The model an export is made from and checked against: the packaged model as ``predict`` serves it,
with the run's test split, its features and (computed once, when needed) its outputs on them."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from tuneproof.errors import RunFolderError
from tuneproof.evidence import Manifest, ModelInfo
from tuneproof.export.manifest import read_manifest
from tuneproof.tasks.base import Features, Task


@dataclass
class Original:
    """The packaged model as ``predict`` serves it, its test features and its outputs on them."""

    task: Task
    tokenizer: Any
    info: ModelInfo
    run_dir: Path
    protocol_dir: Path  # the folder the protocol's relative paths (the base model) resolve against
    test: pd.DataFrame
    features: Features
    pad_id: int
    batch_size: int
    predictor: Any  # the torch Predictor

    @property
    def model_dir(self) -> Path:
        return self.run_dir / "model"

    @cached_property
    def outputs(self) -> np.ndarray:
        """The packaged model's outputs on the test split, computed once, when an export needs them."""
        p = self.predictor
        return self.task.predict(p.model, self.features, self.pad_id, self.batch_size, p.precision)

    @classmethod
    def load(cls, run_dir: Path, manifest: Manifest | None = None) -> Original:
        from tuneproof.serve.predict import Predictor

        manifest = manifest or read_manifest(run_dir)
        predictor = Predictor.load(run_dir)
        test_path = run_dir / "data" / "test.parquet"
        if not test_path.is_file():
            raise RunFolderError(f"{run_dir} has no test split ({test_path} is missing)")
        test = pd.read_parquet(test_path)
        task, tok = predictor.task, predictor.tokenizer
        pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
        features = task.features(test, tok, None)
        batch_size = task.protocol.evaluate.batch_size
        protocol_dir = Path(manifest.protocol_dir)
        return cls(
            task, tok, predictor.info, run_dir, protocol_dir, test, features, pad_id, batch_size, predictor
        )

    def fp32_model(self) -> nn.Module:
        """The packaged weights in fp32 (the served model may hold bf16 Linear weights)."""
        model = self.task.load_packaged(self.model_dir)
        model.eval()
        return model


__all__ = ["Original"]
