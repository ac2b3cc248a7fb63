"""Find and load a pretrained model safely: hub id, local folder, or a folder shipped in a package.

Pickle-based weights (.bin, .pt, .pth, .ckpt) can run code when loaded; they are refused unless the
protocol sets ``model.allow_pickle``, and even then transformers loads them with weights_only=True.
Models whose config asks for custom code are refused unless ``model.allow_remote_code`` is set.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneproof.data.locate import resolve_location
from tuneproof.errors import Problem, ProtocolError, UnsafeArtifactError
from tuneproof.protocol.schema import ModelSpec, PackageFile

PICKLE_SUFFIXES = {".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle"}


@dataclass(frozen=True)
class ModelRef:
    name_or_path: str  # what from_pretrained receives
    local: bool
    spec: ModelSpec

    def load_kwargs(self) -> dict[str, Any]:
        kw: dict[str, Any] = {"trust_remote_code": self.spec.allow_remote_code}
        if self.spec.revision:
            kw["revision"] = self.spec.revision
        if self.spec.gguf_file:
            kw["gguf_file"] = self.spec.gguf_file
        elif not self.spec.allow_pickle:
            kw["use_safetensors"] = True
        return kw


def check_folder_safety(folder: Path, spec: ModelSpec) -> None:
    config = folder / "config.json"
    if config.is_file() and not spec.allow_remote_code:
        try:
            cfg = json.loads(config.read_text())
        except ValueError:
            cfg = {}
        if isinstance(cfg, dict) and cfg.get("auto_map"):
            raise UnsafeArtifactError(
                f"{config}: the model needs custom code (auto_map); set model.allow_remote_code: true "
                "only if you trust its author"
            )
    if spec.gguf_file or spec.allow_pickle:
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    has_safetensors = any(folder.glob("*.safetensors"))
    if pickles and not has_safetensors:
        raise UnsafeArtifactError(
            f"{folder}: weights are pickle files ({', '.join(pickles)}), which can execute code when loaded; "
            "convert them to safetensors or set model.allow_pickle: true"
        )


def resolve_model(spec: ModelSpec, base_dir: Path) -> ModelRef:
    src = spec.source
    if isinstance(src, PackageFile):
        path, problem = resolve_location(src, base_dir, "model.source")
        if problem is not None:
            raise ProtocolError([problem])
        assert path is not None
        check_folder_safety(path, spec)
        return ModelRef(str(path), True, spec)
    local = (base_dir / src).expanduser()
    if src.startswith((".", "/", "~")) or local.is_dir():
        if not local.is_dir():
            raise ProtocolError([Problem("model.source", f"folder {local.resolve()} does not exist")])
        check_folder_safety(local.resolve(), spec)
        return ModelRef(str(local.resolve()), True, spec)
    if src.count("/") > 1 or ".." in src:
        raise ProtocolError(
            [Problem("model.source", f"{src!r} is neither a folder nor a hub id (owner/name)")]
        )
    return ModelRef(src, False, spec)


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    kw = ref.load_kwargs()
    kw.pop("use_safetensors", None)
    tok = AutoTokenizer.from_pretrained(ref.name_or_path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_pretrained(auto_cls: Any, ref: ModelRef, **kwargs: Any) -> Any:
    try:
        return auto_cls.from_pretrained(ref.name_or_path, **ref.load_kwargs(), **kwargs)
    except ValueError as exc:
        msg = str(exc)
        if "trust_remote_code" in msg:
            raise UnsafeArtifactError(
                f"model {ref.name_or_path} needs custom code; set model.allow_remote_code: true to allow it"
            ) from None
        raise
    except OSError as exc:
        if "safetensors" in str(exc) and not ref.spec.allow_pickle:
            raise UnsafeArtifactError(
                f"model {ref.name_or_path} has no safetensors weights; pickle weights are refused unless "
                "model.allow_pickle: true"
            ) from None
        raise
