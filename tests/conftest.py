from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
# Tests never reach a hub, and stay on one thread each so parallel work on 2 cores stays predictable.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TUNEPROOF_THREADS", "1")

from helpers import toy_reviews, write_jsonl, write_protocol, write_tiny_bert


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_bert(tmp_path_factory.mktemp("tiny-bert"))


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    cache = tmp_path_factory.getbasetemp() / "tuneproof-cache"
    monkeypatch.setenv("TUNEPROOF_CACHE", str(cache))
    import tuneproof.train.features as features

    monkeypatch.setattr(features, "DEFAULT_CACHE", cache)


@pytest.fixture
def toy_protocol(tmp_path: Path, tiny_bert: Path) -> Path:
    data = write_jsonl(tmp_path / "reviews.jsonl", toy_reviews(400))
    return write_protocol(tmp_path / "protocol.yaml", tiny_bert, data)
