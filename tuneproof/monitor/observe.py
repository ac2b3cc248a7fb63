"""Turn texts (and the model's predictions, when already known) into an ``Observed`` sample."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from tuneproof.monitor.features import Observed, embed, probabilities_of, summaries, token_stats
from tuneproof.serve.predict import Predictor


def observe(
    predictor: Predictor,
    texts: Sequence[str],
    predictions: Sequence[dict[str, Any]] | None = None,
    labels: Sequence[str] | None = None,
    with_embeddings: bool = True,
) -> Observed:
    """Every drift quantity of ``texts``; predictions are made with the run's model when not given
    (a window read from a plain file), or taken as given (captured from the server)."""
    texts = list(texts)
    preds = list(predictions) if predictions is not None else predictor.predict(texts)
    lengths, unk = token_stats(predictor.tokenizer, texts)
    cats, conf, score = summaries(preds)
    emb = None
    if with_embeddings:
        emb = embed(
            predictor.model,
            predictor.tokenizer,
            texts,
            int(predictor.info.max_length or 512),
            predictor.precision,
            predictor.batch_size,
        )
    return Observed(
        texts=texts,
        lengths=lengths,
        unk_rate=unk,
        category=cats,
        confidence=conf,
        score=score,
        embeddings=emb,
        probabilities=probabilities_of(preds, predictor.task.labels),
        labels=None if labels is None else [str(x) for x in labels],
    )
