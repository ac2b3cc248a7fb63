"""Convert a GGUF model once into a plain safetensors folder in the tuneproof cache.

Loading GGUF de-quantises every tensor on each load (about 17 s for a 135M model on 2 cores), and
every run loads its model at least twice (training, then the base-model baseline). The converted
folder is keyed by the GGUF file's SHA-256, so a changed file converts again and an unchanged one
never does. The folder is written under a temporary name and renamed into place, so a crash never
leaves a half-written model that a later run would trust.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from tuneproof.fsutil import fsync_dir, sha256_file

DONE = "tuneproof_gguf.json"


def cache_root() -> Path:
    # Read at call time: tests and users redirect the cache by patching or setting TUNEPROOF_CACHE.
    from tuneproof.train import features

    return Path(features.DEFAULT_CACHE) / "gguf"


def converted_folder(src_dir: Path, gguf_file: str, root: Path | None = None) -> Path:
    """The safetensors folder for ``src_dir/gguf_file``, converting it on first use."""
    gguf = Path(src_dir) / gguf_file
    digest = sha256_file(gguf)
    out = (root or cache_root()) / digest[:32]
    if (out / DONE).is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".tmp-{out.name}-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        _convert(Path(src_dir), gguf_file, tmp)
        (tmp / DONE).write_text(json.dumps({"gguf_file": str(gguf), "sha256": digest}, indent=1))
        fsync_dir(tmp)
        try:
            os.replace(tmp, out)
        except OSError:
            if not (out / DONE).is_file():  # not a concurrent conversion that finished first
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _convert(src_dir: Path, gguf_file: str, dest: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(src_dir, gguf_file=gguf_file)
    model = AutoModelForCausalLM.from_pretrained(src_dir, gguf_file=gguf_file, dtype=torch.float32)
    # The weights are already de-quantised to fp32; the GGUF quantizer only blocks save_pretrained.
    model.hf_quantizer = None  # type: ignore[assignment]
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(dest, safe_serialization=True)
    tokenizer.save_pretrained(dest)
