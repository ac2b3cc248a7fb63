"""Drift gauges over a rolling window of a server's recent requests, against the run's reference.

The same tests as ``tuneproof monitor`` (``drift.py``), except the embedding domain classifier: it
needs a second forward pass per request and hundreds of classifier fits per calibration, which a
request path should not pay. ``gauges()`` is cheap (a few scipy calls on at most ``window`` values)
and is meant to be read on each Prometheus scrape.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tuneproof.monitor.drift import DriftTest, category_test, ks_test, unknown_token_test
from tuneproof.monitor.features import summarize_prediction, token_stats
from tuneproof.monitor.reference import load_reference


class LiveDrift:
    """``observe`` what the server answered; ``gauges`` gives p-values and effect sizes (NaN while a
    statistic is undefined, e.g. before ``drift.MIN_ROWS`` requests, which Prometheus shows as such)."""

    def __init__(self, run_dir: Path, window: int = 500) -> None:
        from transformers import AutoTokenizer

        if window < 1:
            raise ValueError("window must be at least 1")
        self.reference = load_reference(run_dir).observed
        self.tokenizer = AutoTokenizer.from_pretrained(Path(run_dir) / "model")
        self.window = window
        # (tokens, unknown share, category, confidence, score) per observed text, newest last.
        self._rows: deque[tuple[int, float, str | None, float, float]] = deque(maxlen=window)
        self._lock = threading.Lock()
        self.observed_total = 0

    def observe(self, texts: list[str], predictions: list[dict[str, Any]]) -> None:
        if len(texts) != len(predictions):
            raise ValueError(f"{len(texts)} texts but {len(predictions)} predictions")
        lengths, unk = token_stats(self.tokenizer, texts)
        rows = []
        for n, u, pred in zip(lengths, unk, predictions, strict=True):
            cat, conf, score = summarize_prediction(pred)
            rows.append(
                (
                    int(n),
                    float(u),
                    cat,
                    math.nan if conf is None else conf,
                    math.nan if score is None else score,
                )
            )
        with self._lock:
            self._rows.extend(rows)
            self.observed_total += len(rows)

    def _snapshot(self) -> list[tuple[int, float, str | None, float, float]]:
        with self._lock:
            return list(self._rows)

    def gauges(self) -> dict[str, float]:
        rows = self._snapshot()
        ref = self.reference
        lengths = np.array([r[0] for r in rows], dtype=np.float64)
        unk = np.array([r[1] for r in rows], dtype=np.float64)
        cats: Sequence[str | None] = [r[2] for r in rows]
        conf = np.array([r[3] for r in rows], dtype=np.float64)
        score = np.array([r[4] for r in rows], dtype=np.float64)
        out: dict[str, float] = {
            "window_size": float(len(rows)),
            "observed_total": float(self.observed_total),
        }
        out["length_ks_pvalue"] = _p(ks_test("length", ref.lengths, lengths, "token length"))
        out["unknown_token_rate"] = float(unk.mean()) if unk.size else math.nan
        out["unknown_token_pvalue"] = _p(unknown_token_test(ref.unk_rate, unk))
        out["confidence_ks_pvalue"] = _p(ks_test("confidence", ref.confidence, conf, "confidence"))
        out["confidence_mean"] = float(np.nanmean(conf)) if np.isfinite(conf).any() else math.nan
        if any(c is not None for c in ref.category):
            t = category_test(ref.category, cats)
            out["label_chi2_pvalue"] = _p(t)
            out["label_psi"] = float(t.detail["psi"]) if "psi" in t.detail else math.nan
        else:
            out["score_ks_pvalue"] = _p(ks_test("score", ref.score, score, "predicted scores"))
        return out


def _p(test: DriftTest) -> float:
    return math.nan if test.p_value is None else float(test.p_value)


def live_drift_observers(run_dir: Path, window: int | None = None) -> list[LiveDrift]:
    """What ``tuneproof serve`` watches with: a ``LiveDrift`` when the run stored a reference (tasks
    that are monitored), none otherwise. ``window`` defaults to the protocol's ``monitor.window``."""
    from tuneproof.monitor.reference import REFERENCE_DIR

    run_dir = Path(run_dir)
    if not (run_dir / REFERENCE_DIR).is_dir():
        return []
    if window is None:
        from tuneproof.protocol import load_protocol

        window = load_protocol(run_dir / "protocol.source.yaml").protocol.monitor.window
    return [LiveDrift(run_dir, window=window)]
