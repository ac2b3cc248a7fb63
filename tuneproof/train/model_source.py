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
        if (local / "manifest.json").is_file() and (local / "model").is_dir():
            local = local / "model"  # a previous run's folder: start from the model it packaged
        check_folder_safety(local.resolve(), spec)
        return ModelRef(str(local.resolve()), True, spec)
    if src.count("/") > 1 or ".." in src:
        raise ProtocolError(
            [Problem("model.source", f"{src!r} is neither a folder nor a hub id (owner/name)")]
        )
    return ModelRef(src, False, spec)


def loadable(ref: ModelRef) -> ModelRef:
    """A local GGUF model as its converted safetensors folder (converted once, cached); others as given."""
    if not (ref.spec.gguf_file and ref.local):
        return ref
    from tuneproof.train.gguf_cache import converted_folder

    folder = converted_folder(Path(ref.name_or_path), ref.spec.gguf_file)
    return ModelRef(str(folder), True, ref.spec.model_copy(update={"gguf_file": None, "allow_pickle": False}))


def parent_run(ref: ModelRef) -> dict[str, Any] | None:
    """Lineage of a model packaged by an earlier tuneproof run, or None for any other model."""
    from tuneproof.export.manifest import sha256_path, verify
    from tuneproof.export.package import MODEL_INFO

    folder = Path(ref.name_or_path)
    run_dir = folder.parent
    manifest_path = run_dir / "manifest.json"
    if not (ref.local and (folder / MODEL_INFO).is_file() and manifest_path.is_file()):
        return None
    try:
        manifest = json.loads(manifest_path.read_text())
    except ValueError:
        manifest = {}
    diff = verify(run_dir)
    prefix = f"{folder.name}/"
    model_changes = [f for kind in ("changed", "missing") for f in diff[kind] if f.startswith(prefix)]
    parent_lineage = manifest.get("lineage") or {}
    return {
        "run": str(run_dir),
        "manifest_sha256": sha256_path(manifest_path),
        "protocol_sha256": manifest.get("protocol_sha256"),
        "task": manifest.get("task"),
        "status": manifest.get("status"),
        "deployable": manifest.get("deployable"),
        # The root of the chain: the parent's own base model, or its parent's, and so on.
        "base_model": parent_lineage.get("base_model") or manifest.get("base_model"),
        "model_files_match_manifest": not model_changes,
        "lineage": parent_lineage,
    }


def load_tokenizer(ref: ModelRef) -> Any:
    from transformers import AutoTokenizer

    ref = loadable(ref)
    kw = ref.load_kwargs()
    kw.pop("use_safetensors", None)
    tok = AutoTokenizer.from_pretrained(ref.name_or_path, **kw)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_pretrained(auto_cls: Any, ref: ModelRef, **kwargs: Any) -> Any:
    ref = loadable(ref)
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
