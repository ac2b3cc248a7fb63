"""Sentence embeddings of texts from the protocol's pretrained model, frozen (never trained).

The label-error check's second kind of cheap model (``cleaning.label_errors.features:
embeddings``): one forward pass per text through the base encoder, mean pooling over the real
tokens and L2 normalisation (what sentence-transformers models such as all-MiniLM-L6-v2 are
trained to produce), then a logistic regression per fold. TF-IDF only sees shared words; the
embeddings also see paraphrases, which is what short, varied texts need. transformers' AutoModel
does the work; only pooling (a masked mean) is written here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tuneproof.train.model_source import ModelRef, load_pretrained, load_tokenizer

BATCH = 64
Embedder = Callable[[Sequence[str]], np.ndarray]


def frozen_embedder(ref: ModelRef, max_length: int, batch_size: int = BATCH) -> Embedder:
    """A function texts -> ``[n, hidden]`` float32 embeddings; the model is loaded on first use."""
    loaded: dict[str, object] = {}

    def embed(texts: Sequence[str]) -> np.ndarray:
        import torch
        from transformers import AutoModel

        if not loaded:
            loaded["tokenizer"] = load_tokenizer(ref)
            loaded["model"] = load_pretrained(AutoModel, ref).eval()
        tok, model = loaded["tokenizer"], loaded["model"]
        hidden_size = int(model.config.hidden_size)  # type: ignore[attr-defined]
        out = np.zeros((len(texts), hidden_size), dtype=np.float32)
        # Length-sorted batches pad little; the order is restored by index.
        order = np.argsort([len(t) for t in texts], kind="stable")
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                idx = order[start : start + batch_size]
                batch = tok(  # type: ignore[operator]
                    [texts[i] for i in idx],
                    padding=True,
                    truncation=True,
                    max_length=max_length,
                    return_tensors="pt",
                )
                if "token_type_ids" not in _inputs(model):
                    batch.pop("token_type_ids", None)
                hidden = model(**batch).last_hidden_state.float()  # type: ignore[operator]
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)
                out[idx] = torch.nn.functional.normalize(pooled, dim=-1).numpy()
        return out

    return embed


def _inputs(model: object) -> set[str]:
    """The keyword inputs the model's forward accepts (some encoders take no token_type_ids)."""
    import inspect

    return set(inspect.signature(model.forward).parameters)  # type: ignore[attr-defined]
