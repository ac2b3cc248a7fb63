"""Frozen all-MiniLM-L6-v2 sentence embeddings (mean-pooled) of texts, cached by content hash.

A cheap stand-in for the fine-tuned encoder in benchmarks that refit a classifier many times
(label-error and imbalance measurements): one forward pass per text, then logistic regressions.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from benchmarks.data import CACHE, minilm_dir

BATCH = 128


def embed(texts: Sequence[str]) -> np.ndarray:
    """``[len(texts), 384]`` float32 embeddings; computed once per distinct list of texts."""
    digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()[:16]
    path = CACHE / f"minilm-embeddings-{digest}.npy"
    if path.exists():
        return np.load(path)
    import torch
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(minilm_dir())
    model = AutoModel.from_pretrained(minilm_dir()).eval()
    order = np.argsort([len(t) for t in texts])  # length-sorted batches pad little
    out = np.zeros((len(texts), model.config.hidden_size), dtype=np.float32)
    with torch.inference_mode():
        for start in range(0, len(texts), BATCH):
            idx = order[start : start + BATCH]
            batch = tok(
                [texts[i] for i in idx], padding=True, truncation=True, max_length=128, return_tensors="pt"
            )
            hidden = model(**batch).last_hidden_state
            mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
            out[idx] = ((hidden * mask).sum(1) / mask.sum(1)).numpy()
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(path, out)
    return out
