"""Safe loading: pickles and remote code are refused unless the protocol allows them."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import pytest

from tuneproof.errors import UnsafeArtifactError
from tuneproof.protocol import parse_protocol
from tuneproof.train.model_source import load_pretrained, resolve_model


class _Payload:
    """Unpickling this creates a file: the proof that loading a pickle runs code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, ...]]:
        return (Path.touch, (str(self.marker),))  # type: ignore[return-value]


def _spec(folder: Path, extra: str = "") -> object:
    return parse_protocol(f"name: t\nmodel: {{source: {folder}{extra}}}\ndata: {{files: [x.csv]}}\n").model


def test_pickle_weights_are_refused_and_never_unpickled(tmp_path: Path, tiny_bert: Path) -> None:
    folder = tmp_path / "evil"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    with pytest.raises(UnsafeArtifactError, match=r"pickle files \(pytorch_model.bin\)"):
        resolve_model(_spec(folder), tmp_path)  # type: ignore[arg-type]
    assert not marker.exists()


def test_allowed_pickle_is_still_loaded_without_running_code(tmp_path: Path, tiny_bert: Path) -> None:
    from transformers import AutoModelForSequenceClassification

    folder = tmp_path / "evil"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "pwned"
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps(_Payload(marker)))
    ref = resolve_model(_spec(folder, ", allow_pickle: true"), tmp_path)  # type: ignore[arg-type]
    with pytest.raises(Exception):  # noqa: B017 - transformers' weights_only loader rejects the payload
        load_pretrained(AutoModelForSequenceClassification, ref, num_labels=2)
    assert not marker.exists()


def test_remote_code_is_refused_unless_allowed(tmp_path: Path, tiny_bert: Path) -> None:
    folder = tmp_path / "custom"
    shutil.copytree(tiny_bert, folder)
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(UnsafeArtifactError, match="allow_remote_code"):
        resolve_model(_spec(folder), tmp_path)  # type: ignore[arg-type]
    ref = resolve_model(_spec(folder, ", allow_remote_code: true"), tmp_path)  # type: ignore[arg-type]
    assert ref.load_kwargs()["trust_remote_code"] is True


def test_hub_ids_are_passed_with_safetensors_only(tmp_path: Path) -> None:
    ref = resolve_model(_spec(Path("sentence-transformers/all-MiniLM-L6-v2")), tmp_path)  # type: ignore[arg-type]
    assert not ref.local
    assert ref.load_kwargs() == {"trust_remote_code": False, "use_safetensors": True}


def test_no_code_path_loads_pickle_with_weights_only_false() -> None:
    root = Path(__file__).parents[2] / "tuneproof"
    for path in root.rglob("*.py"):
        text = path.read_text()
        assert "weights_only=False" not in text, path
        assert "pickle.load" not in text, path
        assert "eval(" not in text.replace(".eval(", "").replace("_eval(", ""), path
        assert "exec(" not in text, path
