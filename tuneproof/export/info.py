"""The evidence files of one export folder (``exports/<format>/``): what the export is, and its verification.

``tuneproof_export.json`` says what a consumer needs to read the exported graph (its inputs, the
output and what each column means, the multi-label thresholds); ``verification.json`` holds the
re-evaluation on the test split, the export gates' verdicts and whether the export is released.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from tuneproof.evidence import Evidence, GateReport
from tuneproof.fsutil import sha256_file

OutputKind = Literal["probabilities", "score", "token_probabilities"]


class ExportInfo(Evidence):
    """``tuneproof_export.json``: how to feed the exported model and how to read what comes out."""

    FILE: ClassVar[str] = "tuneproof_export.json"
    OMIT_IF_NONE: ClassVar[frozenset[str]] = frozenset({"thresholds", "model_file", "opset", "kept_fp32"})

    format: str
    task: str
    kind: OutputKind | Literal["merged_weights"]
    labels: list[str]  # what each output column means, in column order
    max_length: int
    inputs: list[str] = Field(default_factory=lambda: ["input_ids", "attention_mask"])
    output: str | None = None  # the graph's output name (None for merged weights)
    model_file: str | None = None  # the graph file in the folder (ONNX formats)
    opset: int | None = None
    thresholds: dict[str, float] | None = None  # multi-label: each label's decision threshold
    source_model_sha256: str  # digest of the packaged model's weights this export was made from
    quantization: str | None = None
    kept_fp32: list[str] | None = None  # onnx-int8: the weight nodes left in fp32 (export.int8.keep_fp32)


class ExportVerification(Evidence):
    """``verification.json``: the export scored on the run's test split against the original model."""

    FILE: ClassVar[str] = "verification.json"

    format: str
    released: bool
    reason: str
    n: int
    confidence: float
    # The export's evaluation envelope: ``model`` (its metrics, identical_predictions,
    # max_probability_difference / max_score_difference), ``baselines.original`` (the original
    # model's metrics) and ``comparisons.original`` (export minus original, paired on the same rows).
    evaluation: dict[str, Any]
    gates: GateReport
    seconds: float


def model_digest(model_dir: Path) -> str:
    """One digest over the packaged model's weight files (names and contents)."""
    import hashlib

    h = hashlib.sha256()
    for p in sorted(model_dir.glob("*.safetensors")):
        h.update(p.name.encode() + b"\0" + sha256_file(p).encode() + b"\n")
    return h.hexdigest()


__all__ = ["ExportInfo", "ExportVerification", "OutputKind", "model_digest"]
