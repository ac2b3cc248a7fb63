"""``cleaning.label_errors.features: embeddings``: the label-error check on the base model's frozen
sentence embeddings instead of TF-IDF, through the detector and through the data stage."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from test_label_errors import FLIP_ROWS, _flip, clear_reviews  # noqa: E402

from helpers import NEGATIVE, POSITIVE, write_jsonl, write_tiny_bert  # noqa: E402
from tuneproof.data.frozen_embeddings import frozen_embedder  # noqa: E402
from tuneproof.data.label_errors import find_suspects  # noqa: E402
from tuneproof.data.prepare import prepare_data  # noqa: E402
from tuneproof.errors import ProtocolError  # noqa: E402
from tuneproof.protocol import parse_protocol  # noqa: E402
from tuneproof.protocol.schema import LabelErrorsSpec, ModelSpec  # noqa: E402
from tuneproof.train.model_source import resolve_model  # noqa: E402


def _splits(n: int = 600) -> tuple[dict[str, pd.DataFrame], set[str]]:
    rows = clear_reviews(n, seed=3)
    for i in FLIP_ROWS:
        rows[i]["label"] = _flip(rows[i]["label"])
    df = pd.DataFrame(rows).assign(row_id=[f"r{i}" for i in range(n)])
    return {"train": df.iloc[:500], "test": df.iloc[500:]}, {f"r{i}" for i in FLIP_ROWS}


class CountingEmbedder:
    """Sentiment-word counts as a 2-d embedding (a perfect feature here), recording every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(len(texts))
        split = [t.split() for t in texts]
        counts = [[sum(w in POSITIVE for w in ws), sum(w in NEGATIVE for w in ws)] for ws in split]
        return np.array(counts, dtype=np.float32)


def test_embedding_features_find_the_flips_and_embed_each_text_once() -> None:
    splits, planted = _splits()
    embed = CountingEmbedder()
    # predicted_neq_given: with a feature that decides every clean row, the flagged rows must be
    # exactly the flips (cleanlab's noise-rate pruning would flag only the share it estimates).
    spec = LabelErrorsSpec(features="embeddings", filter_by="predicted_neq_given")
    found, labels, multi = find_suspects(spec, splits, seed=13, embed=embed)
    assert labels == ["neg", "pos"] and not multi
    flagged = {r["row_id"] for r in found["train"].rows}
    assert flagged == planted & set(splits["train"]["row_id"])
    assert {r["row_id"] for r in found["test"].rows} == planted & set(splits["test"]["row_id"])
    assert all(r["confidence"] > 0.8 for r in found["train"].rows)
    # One pass over every distinct text of every split; the folds reuse it.
    assert embed.calls == [len(set(pd.concat(splits.values())["text"]))]


def test_embedding_features_differ_from_tfidf_and_need_an_embedder() -> None:
    splits, _ = _splits()
    tfidf, _, _ = find_suspects(LabelErrorsSpec(), splits, seed=13, embed=CountingEmbedder())
    spec = LabelErrorsSpec(features="embeddings")
    embedded, _, _ = find_suspects(spec, splits, seed=13, embed=CountingEmbedder())
    # The feature kind is really used: the two models' probabilities differ on the suspects.
    probs_t = [r["given_probability"] for r in tfidf["train"].rows]
    probs_e = [r["given_probability"] for r in embedded["train"].rows]
    assert probs_t != probs_e
    with pytest.raises(ValueError, match="embedder"):
        find_suspects(LabelErrorsSpec(features="embeddings"), splits, seed=13)


def test_frozen_embedder_is_normalised_deterministic_and_order_independent(tmp_path: Path) -> None:
    model = write_tiny_bert(tmp_path / "tiny")
    ref = resolve_model(ModelSpec(source=str(model)), tmp_path)
    embed = frozen_embedder(ref, max_length=32, batch_size=3)
    texts = ["good film", "the movie was awful and dull", "fine", "bad bad bad movie", "lovely warm film"]
    a = embed(texts)
    assert a.shape == (5, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    # Batching by length and padding do not change a text's vector.
    b = embed(texts[::-1])[::-1]
    np.testing.assert_allclose(a, b, atol=1e-5)
    single = embed([texts[1]])
    np.testing.assert_allclose(single[0], a[1], atol=1e-5)
    assert not np.allclose(a[0], a[1])


def test_data_stage_runs_the_check_on_the_protocol_model(tmp_path: Path) -> None:
    model = write_tiny_bert(tmp_path / "tiny")
    rows = clear_reviews(400, seed=5)
    flips = list(range(3, 400, 20))
    for i in flips:
        rows[i]["label"] = _flip(rows[i]["label"])
    path = write_jsonl(tmp_path / "reviews.jsonl", rows)
    protocol = parse_protocol(
        f"name: t\nmodel: {{source: {model}, max_length: 32}}\n"
        f"data: {{files: [{path}], labels: [neg, pos]}}\n"
        "cleaning: {near_duplicates: {enabled: false},"
        " label_errors: {policy: report, features: embeddings}}\n"
        "split: {train: 0.7, validation: 0.1, test: 0.2}\n"
    )
    prepared = prepare_data(protocol, tmp_path)
    info = prepared.report["label_errors"]
    assert "frozen sentence embeddings" in info["method"]
    assert info["splits"]["train"]["checked"] == len(prepared.splits["train"])
    flagged = {r["row_id"] for r in info["splits"]["train"]["rows"]}
    planted = {f"reviews.jsonl:{i + 1}" for i in flips} & set(prepared.splits["train"]["row_id"])
    # A random tiny encoder's embeddings still carry which words a text has: more flips are found
    # than flagging as many random rows would find (5% of them).
    assert flagged and len(flagged & planted) / len(flagged) > 0.2


def test_features_is_checked_by_the_schema() -> None:
    with pytest.raises(ProtocolError, match=r"cleaning\.label_errors\.features"):
        parse_protocol(
            "name: t\nmodel: {source: some/model}\ndata: {files: [x.jsonl], labels: [a, b]}\n"
            "cleaning: {label_errors: {features: bert}}\n"
        )
    assert LabelErrorsSpec().features == "tfidf"  # the default is unchanged
