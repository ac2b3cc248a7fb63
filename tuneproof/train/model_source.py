"""Find and load a pretrained model safely: hub id, local folder, or a folder shipped in a package.

Pickle-based weights (.bin, .pt, .pth, .ckpt) can run code when loaded; they are refused unless the
protocol sets ``model.allow_pickle``, and even then transformers loads them with weights_only=True.
Models whose config asks for custom code are refused unless ``model.allow_remote_code`` is set.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneproof.data.locate import resolve_location
from tuneproof.errors import Problem, ProtocolError, UnsafeArtifactError
from tuneproof.evidence import BaseModelRecord, ParentRun
from tuneproof.fsutil import sha256_file
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


# What from_pretrained reads besides tokenizer vocabularies: weights and JSON configs at the top of
# the folder. Docs (README.md), package code (__init__.py) and attribute files do not make the model.
_WEIGHT_SUFFIXES = {".safetensors", ".gguf"}


def _model_files(folder: Path, spec: ModelSpec) -> list[Path]:
    weights = _WEIGHT_SUFFIXES | (PICKLE_SUFFIXES if spec.allow_pickle else set())
    out = []
    for p in sorted(folder.iterdir()):
        if not p.is_file() or p.name.startswith("."):
            continue
        if p.suffix == ".gguf" and spec.gguf_file and p.name != spec.gguf_file:
            continue  # a folder of several quantizations: only the one loaded is the model
        if p.suffix in weights or p.suffix == ".json":
            out.append(p)
    return out


def _hub_snapshot(ref: ModelRef) -> Path | None:
    """The local copy of a hub model in the Hugging Face cache, if one is there (nothing is downloaded)."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(ref.name_or_path, revision=ref.spec.revision, local_files_only=True))
    except Exception:  # not cached, or offline with no copy: the hub id and revision still name it
        return None


def base_model_record(ref: ModelRef) -> BaseModelRecord:
    """The base model as the protocol names it (portable), with the SHA-256 of its weights and configs.

    A folder is recorded as the protocol wrote it (relative to the protocol's folder), not as the
    absolute path it resolved to on this machine; the hashes say whether another machine's copy of
    it is the same model.
    """
    folder = Path(ref.name_or_path) if ref.local else _hub_snapshot(ref)
    files = {p.name: sha256_file(p) for p in _model_files(folder, ref.spec)} if folder is not None else {}
    # One digest for the whole model: the hash of the sorted {file: sha256} table.
    digest = hashlib.sha256(json.dumps(files, sort_keys=True).encode()).hexdigest() if files else None
    return BaseModelRecord(
        source=ref.spec.source,
        revision=ref.spec.revision,
        gguf_file=ref.spec.gguf_file,
        sha256=digest,
        files=files,
    )


def parent_run(ref: ModelRef) -> ParentRun | None:
    """Lineage of a model packaged by an earlier tuneproof run, or None for any other model."""
    from tuneproof.evidence import ModelInfo
    from tuneproof.export.manifest import read_manifest, verify

    folder = Path(ref.name_or_path)
    run_dir = folder.parent
    manifest_path = run_dir / "manifest.json"
    if not (ref.local and (folder / ModelInfo.FILE).is_file() and manifest_path.is_file()):
        return None
    manifest = read_manifest(run_dir)  # a parent whose manifest cannot be read is a RunFolderError
    diff = verify(run_dir)
    prefix = f"{folder.name}/"
    model_changes = [f for kind in ("changed", "missing") for f in diff[kind] if f.startswith(prefix)]
    parent_lineage = manifest.lineage
    return ParentRun(
        run=str(run_dir),
        manifest_sha256=sha256_file(manifest_path),
        protocol_sha256=manifest.protocol_sha256,
        task=manifest.task,
        status=manifest.status,
        deployable=manifest.deployable,
        # The root of the chain: the parent's own base model, or its parent's, and so on.
        base_model=(parent_lineage.base_model if parent_lineage else None) or manifest.base_model,
        model_files_match_manifest=not model_changes,
        lineage=parent_lineage.to_json() if parent_lineage else {},
    )


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
