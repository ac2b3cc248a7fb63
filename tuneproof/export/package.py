"""The package stage: the model as safetensors with its tokenizer and a description, ready to serve."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from torch import nn

from tuneproof.evidence import ModelInfo
from tuneproof.fsutil import replace_dir

MODEL_INFO = ModelInfo.FILE


def package_model(model: nn.Module, tokenizer: Any, info: ModelInfo, out_dir: Path) -> Path:
    """Write ``out_dir`` atomically: a failed write (full disk) leaves any previous model intact."""
    if hasattr(model, "merge_and_unload"):  # a PEFT model: serve the merged weights, no peft needed
        model = model.merge_and_unload()  # type: ignore[operator]  # nn.Module types attributes as Tensor
    tmp = out_dir.with_name(f".tmp-{out_dir.name}")
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        model.save_pretrained(tmp, safe_serialization=True)  # type: ignore[operator]
        tokenizer.save_pretrained(tmp)
        info.write_into(tmp)
        replace_dir(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir
