"""A sentence-embedding classifier as one torch module: transformer body, pooling, optional L2
normalisation, and a linear head. It is what a ``train.method: setfit`` run trains, packages,
predicts and serves.

setfit's own model keeps its scikit-learn head in a joblib (pickle) file, which tuneproof refuses
to load. The fitted logistic regression is exactly a linear layer followed by softmax (multinomial
or binary) or per-label sigmoids (one-vs-rest), so its coefficients are copied into ``nn.Linear``
and the whole model is stored as safetensors plus a small JSON description. Pooling and
normalisation are written here (a few lines) rather than through sentence-transformers so the
packaged model loads with transformers alone, like every other tuneproof model, and exposes the
``logits`` every task's ``predict`` reads.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn
from transformers.modeling_outputs import SequenceClassifierOutput

from tuneproof.errors import RunFolderError
from tuneproof.fsutil import atomic_write_json

HEAD_FILE = "sentence_head.safetensors"
DESCRIPTION_FILE = "sentence_classifier.json"
Pooling = Literal["mean", "cls", "max"]
Activation = Literal["softmax", "sigmoid"]


class SentenceClassifier(nn.Module):
    """``head(normalise(pool(body(tokens))))``; ``logits`` feed softmax (one label) or sigmoid
    (multi-label), as the task's ``predict`` already does for a fine-tuned head."""

    def __init__(
        self,
        body: nn.Module,
        head: nn.Linear,
        pooling: Pooling = "mean",
        normalize: bool = False,
        activation: Activation = "softmax",
    ) -> None:
        super().__init__()
        self.body = body
        self.head = head
        self.pooling: Pooling = pooling
        self.normalize = normalize
        self.activation: Activation = activation

    @property
    def config(self) -> Any:
        """The body's config: what callers read for pad tokens and tuneproof settings."""
        return self.body.config

    def embed(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple[torch.Tensor, Any]:
        out = self.body(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        hidden = out.last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        elif self.pooling == "max":
            pooled = hidden.masked_fill(mask == 0, torch.finfo(hidden.dtype).min).max(1).values
        else:
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        if self.normalize:
            pooled = nn.functional.normalize(pooled, p=2, dim=1)
        return pooled, out

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        output_hidden_states: bool = False,
        **_: Any,
    ) -> SequenceClassifierOutput:
        pooled, out = self.embed(input_ids, attention_mask)
        logits = self.head(pooled.to(self.head.weight.dtype))
        return SequenceClassifierOutput(
            logits=logits, hidden_states=out.hidden_states if output_hidden_states else None
        )

    def save_pretrained(self, path: Path | str, safe_serialization: bool = True, **_: Any) -> None:
        if not safe_serialization:
            raise ValueError("a sentence classifier is only saved as safetensors")
        path = Path(path)
        body: Any = self.body
        body.save_pretrained(path, safe_serialization=True)
        save_file(
            {k: v.detach().float().contiguous().cpu() for k, v in self.head.state_dict().items()},
            str(path / HEAD_FILE),
        )
        atomic_write_json(
            path / DESCRIPTION_FILE,
            {
                "kind": "sentence_classifier",
                "pooling": self.pooling,
                "normalize": self.normalize,
                "activation": self.activation,
                "num_labels": int(self.head.out_features),
                "dim": int(self.head.in_features),
                "head": "linear (logistic-regression coefficients from setfit)",
            },
        )


def is_sentence_classifier(model_dir: Path) -> bool:
    return (model_dir / DESCRIPTION_FILE).is_file()


def load_sentence_classifier(model_dir: Path) -> SentenceClassifier:
    from transformers import AutoModel

    try:
        desc = json.loads((model_dir / DESCRIPTION_FILE).read_text())
        state = load_file(str(model_dir / HEAD_FILE))
    except (OSError, ValueError) as exc:
        raise RunFolderError(f"{model_dir}: the sentence classifier cannot be read ({exc})") from exc
    head = nn.Linear(int(desc["dim"]), int(desc["num_labels"]))
    head.load_state_dict(state, strict=True)
    body = AutoModel.from_pretrained(model_dir, use_safetensors=True)
    return SentenceClassifier(body, head, desc["pooling"], bool(desc["normalize"]), desc["activation"])


def linear_from_logistic(head: Any, n_labels: int, multilabel: bool) -> nn.Linear:
    """The fitted scikit-learn head (LogisticRegression, or OneVsRest of them) as ``nn.Linear`` whose
    softmax (sigmoid for one-vs-rest) reproduces ``predict_proba``.

    A binary logistic regression has one coefficient row w: P(class 1) = sigmoid(w.x + b), which is
    softmax over the logits [0, w.x + b].
    """
    if multilabel:
        coef = np.vstack([e.coef_ for e in head.estimators_])
        bias = np.concatenate([e.intercept_ for e in head.estimators_])
    else:
        coef, bias = np.asarray(head.coef_), np.asarray(head.intercept_)
        if coef.shape[0] == 1 and n_labels == 2:
            coef = np.vstack([np.zeros_like(coef[0]), coef[0]])
            bias = np.array([0.0, bias[0]])
    if coef.shape[0] != n_labels:
        raise ValueError(f"the head has {coef.shape[0]} outputs for {n_labels} labels")
    linear = nn.Linear(coef.shape[1], n_labels)
    with torch.no_grad():
        linear.weight.copy_(torch.as_tensor(coef, dtype=torch.float32))
        linear.bias.copy_(torch.as_tensor(bias, dtype=torch.float32))
    return linear
