"""train.method setfit: the sentence classifier reproduces setfit's own probabilities, is saved as
safetensors only, and the protocol refuses settings setfit does not use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from helpers import toy_reviews
from tuneproof.errors import ProtocolError
from tuneproof.protocol import parse_protocol
from tuneproof.train.sentence_model import (
    DESCRIPTION_FILE,
    HEAD_FILE,
    is_sentence_classifier,
    load_sentence_classifier,
)
from tuneproof.train.setfit_fit import to_sentence_classifier


@pytest.fixture(scope="module")
def body(tiny_bert: Path):  # type: ignore[no-untyped-def]
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_bert), device="cpu")


def _probs(model: torch.nn.Module, tok: object, texts: list[str], activation: str) -> np.ndarray:
    enc = tok(texts, padding=True, truncation=True, max_length=32, return_tensors="pt")  # type: ignore[operator]
    with torch.no_grad():
        logits = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    return (torch.softmax(logits, -1) if activation == "softmax" else torch.sigmoid(logits)).numpy()


@pytest.mark.parametrize("n_labels", [2, 3])
def test_converted_logistic_head_matches_predict_proba(body: object, n_labels: int, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    rows = toy_reviews(90, seed=3)
    texts = [r["text"] for r in rows]
    y = [i % n_labels for i in range(len(rows))]
    emb = body.encode(texts)  # type: ignore[attr-defined]
    head = LogisticRegression(max_iter=1000).fit(emb, y)
    model = to_sentence_classifier(body, head, n_labels, multilabel=False)
    probs = _probs(model, body.tokenizer, texts, "softmax")  # type: ignore[attr-defined]
    np.testing.assert_allclose(probs, head.predict_proba(emb), atol=2e-5)

    model.save_pretrained(tmp_path / "m")
    files = {p.name for p in (tmp_path / "m").iterdir()}
    assert {HEAD_FILE, DESCRIPTION_FILE, "model.safetensors", "config.json"} <= files
    assert not [f for f in files if f.endswith((".pkl", ".joblib", ".bin", ".pt"))]
    assert is_sentence_classifier(tmp_path / "m")
    loaded = load_sentence_classifier(tmp_path / "m")
    np.testing.assert_allclose(_probs(loaded, body.tokenizer, texts, "softmax"), probs, atol=1e-6)  # type: ignore[attr-defined]


def test_one_vs_rest_head_matches_per_label_probabilities(body: object) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    rows = toy_reviews(80, seed=5)
    texts = [r["text"] for r in rows]
    y = np.array([[i % 2, int(i % 3 == 0), int(r["label"] == "pos")] for i, r in enumerate(rows)])
    emb = body.encode(texts)  # type: ignore[attr-defined]
    head = OneVsRestClassifier(LogisticRegression(max_iter=1000)).fit(emb, y)
    model = to_sentence_classifier(body, head, 3, multilabel=True)
    assert model.activation == "sigmoid"
    np.testing.assert_allclose(
        _probs(model, body.tokenizer, texts, "sigmoid"),  # type: ignore[attr-defined]
        head.predict_proba(emb),
        atol=2e-5,
    )


def test_a_head_with_the_wrong_width_is_refused(body: object) -> None:
    from sklearn.linear_model import LogisticRegression

    rows = toy_reviews(30)
    emb = body.encode([r["text"] for r in rows])  # type: ignore[attr-defined]
    head = LogisticRegression().fit(emb, [i % 3 for i in range(30)])
    with pytest.raises(ValueError, match="3 outputs for 2 labels"):
        to_sentence_classifier(body, head, 2, multilabel=False)


BASE = """
name: ok
model: {source: some/model}
data: {files: [d.csv]}
"""


def problems_of(text: str) -> list[str]:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(text)
    return [str(p) for p in info.value.problems]


def test_setfit_protocol_gets_its_defaults() -> None:
    p = parse_protocol(BASE + "train: {method: setfit, setfit: {num_iterations: 5}}")
    assert p.train.method == "setfit"
    assert p.train.setfit.num_iterations == 5 and p.train.setfit.epochs == 1
    p = parse_protocol(
        "name: ok\nmodel: {source: m}\ntask: multilabel\ndata: {files: [d.csv], label_separator: ';'}\n"
        "train: {method: setfit}"
    )
    assert p.train.method == "setfit"


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("train: {method: setfit, early_stopping: {metric: accuracy}}", "does not use train.early_stopping"),
        ("train: {method: setfit, label_smoothing: 0.1}", "does not use train.label_smoothing"),
        ("train: {method: setfit}\nimbalance: {strategy: oversample}", "does not use imbalance.oversample"),
        ("task: regression\ntrain: {method: setfit}", "train.setfit does not apply to regression"),
        ("train: {method: setfit, setfit: {num_iterations: 0}}", "train.setfit.num_iterations"),
    ],
)
def test_setfit_settings_it_cannot_honour_are_refused(extra: str, expected: str) -> None:
    assert any(expected in p for p in problems_of(BASE + extra)), problems_of(BASE + extra)


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("evaluate: {learning_curve: {sizes: [16, 8]}}", "sizes must be strictly increasing"),
        ("evaluate: {learning_curve: {sizes: []}}", "sizes must be a non-empty"),
        ("evaluate: {learning_curve: {methods: [tfidf_logreg, tfidf_logreg]}}", "without duplicates"),
        ("evaluate: {learning_curve: {metric: roc_auc}}", "evaluate.learning_curve.metric"),
        (
            "task: regression\nevaluate: {learning_curve: {}}",
            "evaluate.learning_curve does not apply to regression",
        ),
    ],
)
def test_learning_curve_settings_are_checked(extra: str, expected: str) -> None:
    assert any(expected in p for p in problems_of(BASE + extra)), problems_of(BASE + extra)
