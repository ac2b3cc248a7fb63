"""Every protocol shipped under examples/ is a test case: it must run from a fresh clone.

Each example is validated the way ``tuneproof validate`` does it without ``--no-data`` (schema,
model source, gate names and every data row), and its base model must be on this machine: a
packaged or local folder with its files, or a hub id already in the local cache. An example that
needs something the setup does not install fails here, not in a new user's first run.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tuneproof.protocol import load_protocol
from tuneproof.protocol.check import check_protocol
from tuneproof.train.efficientnet_lite import packaged_weights
from tuneproof.train.model_source import resolve_model

EXAMPLES = sorted((Path(__file__).parents[2] / "examples").glob("*.yaml"))
# A protocol that needs a hub download lives under docs/protocols/, not here; it is checked for its
# schema and data below, but not for its model.
HUB_PROTOCOLS = sorted((Path(__file__).parents[2] / "docs" / "protocols").glob("*.yaml"))


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_protocol_loads(path: Path) -> None:
    loaded = load_protocol(path)
    assert loaded.protocol.name


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_with_its_data(path: Path) -> None:
    loaded, problems = check_protocol(path, read_data=True)
    assert loaded is not None
    assert [str(p) for p in problems] == []


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_model_is_on_this_machine(path: Path) -> None:
    loaded = load_protocol(path)
    spec = loaded.protocol.model
    ref = resolve_model(spec, loaded.base_dir)
    if ref.local:
        folder = Path(ref.name_or_path)
        packaged = packaged_weights(folder)
        if packaged is not None:  # EfficientNet-Lite as its package ships it: a weights file, no config
            assert packaged[1].is_file() and packaged[1].stat().st_size > 1_000_000
            assert spec.allow_pickle  # the .pth is refused otherwise (and loaded with weights_only=True)
            return
        if spec.gguf_file:
            assert (folder / spec.gguf_file).is_file()
        else:
            assert (folder / "config.json").is_file()
            assert any(folder.glob("*.safetensors")) or any(folder.glob("*.bin"))
        return
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot_download(ref.name_or_path, revision=spec.revision, local_files_only=True)
    except LocalEntryNotFoundError:
        raise AssertionError(
            f"{path.name}: model {ref.name_or_path} is neither packaged nor cached"
        ) from None


@pytest.mark.parametrize("path", HUB_PROTOCOLS, ids=lambda p: p.name)
def test_hub_protocol_validates_with_its_data(path: Path) -> None:
    loaded, problems = check_protocol(path, read_data=True)
    assert loaded is not None and [str(p) for p in problems] == []


def test_there_is_a_main_example() -> None:
    assert any(p.name == "review-sentiment.yaml" for p in EXAMPLES)
