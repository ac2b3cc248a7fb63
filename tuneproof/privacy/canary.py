"""Canaries (Carlini et al., 2019, "The Secret Sharer"): plant random secrets in a causal LM's
training split, then rank each one's likelihood under the trained model among random secrets of
the same form that were never planted.

Exposure of a canary = log2(candidates + 1) - log2(rank), where rank 1 means the planted secret is
the most likely of all: 0 when the model prefers it no more than chance would (about 1 bit on
average for a random rank), log2(candidates + 1) when it ranks first. No library offers this for
transformers models (Opacus and the DP libraries stop at training), so it is written here; the
scores are the model's own token log-likelihoods.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.privacy.spec import CanarySpec


@dataclass(frozen=True)
class Canary:
    text: str
    row_ids: tuple[str, ...]


def _secret(spec: CanarySpec, rng: np.random.Generator) -> str:
    return " ".join(spec.alphabet[i] for i in rng.integers(0, len(spec.alphabet), spec.length))


def _text(spec: CanarySpec, secret: str) -> str:
    return f"{spec.prefix} {secret}"


def make_canaries(spec: CanarySpec, seed: int) -> list[str]:
    """``spec.count`` distinct secrets, a pure function of the seed."""
    rng = np.random.default_rng([seed, 1919])
    secrets: list[str] = []
    while len(secrets) < spec.count:
        s = _secret(spec, rng)
        if s not in secrets:
            secrets.append(s)
    return secrets


def plant(train: pd.DataFrame, spec: CanarySpec, seed: int) -> tuple[pd.DataFrame, list[Canary]]:
    """The training split with each canary added ``spec.repeats`` times (row ids ``canary-i-r``),
    at seeded positions among the real rows."""
    canaries: list[Canary] = []
    rows: list[dict[str, Any]] = []
    blank = dict.fromkeys(train.columns)
    for i, secret in enumerate(make_canaries(spec, seed)):
        ids = tuple(f"canary-{i}-{r}" for r in range(spec.repeats))
        canaries.append(Canary(_text(spec, secret), ids))
        rows += [{**blank, "row_id": rid, "text": _text(spec, secret)} for rid in ids]
    planted = pd.concat([train, pd.DataFrame(rows, columns=train.columns)], ignore_index=True)
    order = np.random.default_rng([seed, 1920]).permutation(len(planted))
    return planted.iloc[order].reset_index(drop=True), canaries


def sequence_nll(model: nn.Module, tokenizer: Any, texts: list[str], batch_size: int = 128) -> np.ndarray:
    """Summed negative log-likelihood of each text under a causal LM (its first token is given)."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    out = np.empty(len(texts), dtype=np.float64)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(texts), batch_size):
                chunk = encoded[start : start + batch_size]
                width = max(len(x) for x in chunk)
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for j, x in enumerate(chunk):
                    ids[j, : len(x)] = torch.tensor(x)
                    mask[j, : len(x)] = 1
                ids, mask = ids.to(device), mask.to(device)
                logits = model(input_ids=ids, attention_mask=mask).logits.float()
                logp = torch.log_softmax(logits[:, :-1], dim=-1)
                target = ids[:, 1:]
                token_nll = -logp.gather(-1, target.unsqueeze(-1)).squeeze(-1) * mask[:, 1:]
                out[start : start + len(chunk)] = token_nll.sum(-1).cpu().numpy()
    finally:
        model.train(was_training)
    return out


def exposure(
    model: nn.Module, tokenizer: Any, canaries: list[Canary], spec: CanarySpec, seed: int
) -> dict[str, Any]:
    """Each canary's rank and exposure among ``spec.candidates`` random secrets of its form."""
    planted = {c.text for c in canaries}
    rng = np.random.default_rng([seed, 1921])
    candidates: list[str] = []
    seen: set[str] = set()
    while len(candidates) < spec.candidates:
        text = _text(spec, _secret(spec, rng))
        if text not in planted and text not in seen:
            seen.add(text)
            candidates.append(text)
    cand_nll = sequence_nll(model, tokenizer, candidates)
    canary_nll = sequence_nll(model, tokenizer, [c.text for c in canaries])
    top = math.log2(spec.candidates + 1)
    per: list[dict[str, Any]] = []
    for c, nll in zip(canaries, canary_nll, strict=True):
        rank = 1 + int(np.sum(cand_nll < nll))
        per.append(
            {
                "canary": c.text,
                "rows": len(c.row_ids),
                "nll": float(nll),
                "rank": rank,
                "exposure": top - math.log2(rank),
            }
        )
    return {
        "canary_exposure": float(np.mean([p["exposure"] for p in per])),
        "details": {
            "candidates": spec.candidates,
            "max_exposure": top,
            "median_candidate_nll": float(np.median(cand_nll)),
            "canaries": per,
        },
    }
