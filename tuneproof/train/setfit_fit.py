"""``train.method: setfit``: contrastive fine-tuning of a sentence-transformers body on pairs made
from the labelled rows, then a logistic-regression head on the tuned embeddings (the SetFit
method, trained by the ``setfit`` package), handed back as a :class:`SentenceClassifier`.

The head is setfit's default scikit-learn logistic regression (the published method, and a convex
fit that needs no learning rate or epochs on a few dozen rows); its coefficients are copied into a
torch linear layer so the packaged model is safetensors only (setfit would pickle it with joblib).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pandas as pd
from torch import nn

from tuneproof.errors import Problem, ProtocolError
from tuneproof.protocol.schema import Protocol
from tuneproof.train.loop import TrainResult
from tuneproof.train.model_source import ModelRef
from tuneproof.train.sentence_model import SentenceClassifier, linear_from_logistic

SUPPORTED_POOLING = ("mean", "cls", "max")


def texts_of(features: list[dict[str, Any]], splits: dict[str, pd.DataFrame], split: str) -> list[str]:
    """The cleaned texts of ``features``, found by row id in the prepared split they came from."""
    by_id = dict(zip(splits[split]["row_id"].astype(str), splits[split]["text"], strict=True))
    return [by_id[str(f["row_id"])] for f in features]


def load_body(ref: ModelRef, max_length: int) -> Any:
    """The pretrained model as a SentenceTransformer (a plain transformers folder gets mean pooling)."""
    from sentence_transformers import SentenceTransformer

    body = SentenceTransformer(
        ref.name_or_path,
        device="cpu",
        trust_remote_code=ref.spec.allow_remote_code,
        revision=ref.spec.revision,
        model_kwargs={"use_safetensors": not ref.spec.allow_pickle},
    )
    body.max_seq_length = max_length  # what the packaged model's tokenisation truncates to, too
    return body


def to_sentence_classifier(body: Any, head: Any, n_labels: int, multilabel: bool) -> SentenceClassifier:
    """The trained SentenceTransformer and sklearn head as one torch module (checked, not assumed)."""
    from sentence_transformers.base.modules.normalize import Normalize
    from sentence_transformers.base.modules.transformer import Transformer
    from sentence_transformers.sentence_transformer.modules.pooling import Pooling

    modules = list(body)
    kinds = [type(m).__name__ for m in modules]
    pooling = modules[1] if len(modules) > 1 else None
    ok = (
        2 <= len(modules) <= 3
        and isinstance(modules[0], Transformer)
        and isinstance(pooling, Pooling)
        and pooling.pooling_mode in SUPPORTED_POOLING
        and pooling.include_prompt
        and (len(modules) == 2 or isinstance(modules[2], Normalize))
    )
    if not ok:
        raise ProtocolError(
            [
                Problem(
                    "train.method",
                    f"setfit: the sentence-transformers model is {' -> '.join(kinds)}; tuneproof packages "
                    f"Transformer -> Pooling ({'/'.join(SUPPORTED_POOLING)}) [-> Normalize]",
                )
            ]
        )
    assert isinstance(pooling, Pooling)
    linear = linear_from_logistic(head, n_labels, multilabel)
    return SentenceClassifier(
        modules[0].auto_model,
        linear,
        pooling.pooling_mode,
        normalize=len(modules) == 3,
        activation="sigmoid" if multilabel else "softmax",
    )


def fit_setfit(
    protocol: Protocol,
    ref: ModelRef,
    train_texts: list[str],
    train_labels: list[Any],
    n_labels: int,
    multilabel: bool,
    work_dir: Path,
) -> tuple[nn.Module, TrainResult]:
    """Train SetFit on the given rows; deterministic for a seed on CPU."""
    from datasets import Dataset
    from setfit import SetFitModel, Trainer, TrainingArguments
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier

    spec = protocol.train.setfit
    body = load_body(ref, protocol.model.max_length)
    balanced = "balanced" if protocol.imbalance.strategy == "class_weights" else None
    logreg = LogisticRegression(
        C=spec.head_c, max_iter=1000, random_state=protocol.seed, class_weight=balanced
    )
    head: Any = OneVsRestClassifier(logreg) if multilabel else logreg
    model = SetFitModel(
        model_body=body, model_head=head, multi_target_strategy="one-vs-rest" if multilabel else None
    )
    args = TrainingArguments(
        output_dir=str(work_dir),
        batch_size=spec.batch_size,
        num_epochs=spec.epochs,
        body_learning_rate=spec.learning_rate,
        num_iterations=spec.num_iterations,
        max_steps=spec.max_steps if spec.max_steps is not None else -1,
        max_length=protocol.model.max_length,
        seed=protocol.seed,
        report_to="none",
        save_strategy="no",
        show_progress_bar=False,
        logging_steps=max(1, spec.logging_steps),
    )
    trainer = Trainer(
        model=model, args=args, train_dataset=Dataset.from_dict({"text": train_texts, "label": train_labels})
    )
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    state = trainer.st_trainer.state
    history = [{k: v for k, v in e.items() if isinstance(v, int | float | str)} for e in state.log_history]
    for entry in history:  # setfit names the body's contrastive loss embedding_loss
        if "embedding_loss" in entry:
            entry["loss"] = entry["embedding_loss"]
    result = TrainResult(
        log_history=history,
        steps=int(state.global_step),
        best_step=None,
        best_metric=None,
        stopped_early=False,
        resumed_from=None,
        skipped_checkpoints=[],
        real_tokens=0,
        padded_tokens=0,
        train_seconds=seconds,
    )
    return to_sentence_classifier(model.model_body, model.model_head, n_labels, multilabel), result
