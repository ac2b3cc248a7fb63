"""``merged``: a LoRA run's adapters merged into the base weights (PEFT ``merge_and_unload``), verified.

A LoRA run keeps its adapter (``adapter/``, PEFT's own format) next to the packaged model. The merged
export rebuilds the adapter model from the base model and that adapter, merges it, and scores both
on the test split in fp32: a merge whose largest change (a probability, a score, or a row's per-token
loss for language models) exceeds ``export.merge_tolerance`` is refused with an
:class:`~tuneproof.errors.ExportError`, and nothing is written. Otherwise the merged weights are
saved as safetensors and verified against the adapter model like every export.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from tuneproof.errors import ExportError
from tuneproof.export.info import ExportInfo, model_digest
from tuneproof.protocol.schema import ExportSpec

if TYPE_CHECKING:
    from tuneproof.export.original import Original

ADAPTER_DIR = "adapter"


def save_adapter(model: nn.Module, run_dir: Path) -> Path | None:
    """Save a PEFT model's adapter into ``run_dir/adapter`` (before packaging merges it away)."""
    from peft import PeftModel

    if not isinstance(model, PeftModel):
        return None
    out = run_dir / ADAPTER_DIR
    model.save_pretrained(str(out), safe_serialization=True)
    return out


def largest_change(task: Any, adapter: np.ndarray, merged: np.ndarray) -> tuple[float, str]:
    """The largest change the merge made to any row's output, and what that is measured in."""
    if task.spec.generative:
        per_token = np.asarray(merged["nll"], dtype=np.float64) / np.maximum(merged["tokens"], 1)
        before = np.asarray(adapter["nll"], dtype=np.float64) / np.maximum(adapter["tokens"], 1)
        return float(np.abs(per_token - before).max(initial=0.0)), "per-token loss"
    from tuneproof.export.reverify import agreement

    _, worst, name, _ = agreement(task, adapter, merged, 1.0)
    return worst, "score" if name.endswith("score_difference") else "probability"


def export_merged(
    original: Original, out: Path, spec: ExportSpec
) -> tuple[ExportInfo, np.ndarray, np.ndarray]:
    """(info, merged outputs, adapter-model outputs) on the test split; the merged weights go to ``out``."""
    from peft import PeftModel

    from tuneproof.train.model_source import resolve_model

    task, protocol = original.task, original.task.protocol
    adapter_dir = original.run_dir / ADAPTER_DIR
    if protocol.train.method != "lora":
        raise ExportError(
            "'merged' applies to runs trained with LoRA; this run trained with train.method "
            f"{protocol.train.method!r} (its packaged model already holds all its weights)"
        )
    if not (adapter_dir / "adapter_config.json").is_file():
        raise ExportError(
            f"{original.run_dir} has no {ADAPTER_DIR}/ (a run packaged before adapters were kept); "
            "re-run it to export it merged"
        )
    ref = resolve_model(protocol.model, original.protocol_dir)
    torch.manual_seed(protocol.seed)
    base = task.build_model(ref)
    adapted = PeftModel.from_pretrained(base, adapter_dir).eval()
    feats, pad, bs = original.features, original.pad_id, original.batch_size
    torch.manual_seed(protocol.seed)
    before = task.predict(adapted, feats, pad, bs, "fp32")
    merged = adapted.merge_and_unload().eval()
    torch.manual_seed(protocol.seed)
    after = task.predict(merged, feats, pad, bs, "fp32")
    change, unit = largest_change(task, before, after)
    if not np.isfinite(change) or change > spec.merge_tolerance:
        raise ExportError(
            f"merging the LoRA adapter changes the model's results: the largest {unit} change on the test "
            f"split is {change:.3g}, beyond export.merge_tolerance {spec.merge_tolerance:g}; the merged "
            "weights are refused (serve the adapter model, or raise the tolerance knowingly)"
        )
    merged.save_pretrained(out, safe_serialization=True)
    original.tokenizer.save_pretrained(out)
    info = ExportInfo(
        format="merged",
        task=task.name,
        kind="merged_weights",
        labels=list(task.labels),
        max_length=original.info.max_length,
        source_model_sha256=model_digest(original.model_dir),
    )
    info.write(out)
    return info, after, before


__all__ = ["ADAPTER_DIR", "export_merged", "largest_change", "save_adapter"]
