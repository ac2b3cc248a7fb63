"""Test metrics per site and pooled over sites, from confusion counts, with bootstrap intervals.

The sites send confusion counts of their own bootstrap resamples (``site.confusion_replicates``);
here they become per-site intervals and, summed replicate by replicate, the intervals of the pooled
metric under a bootstrap stratified by site. The gates: every site's lower bound above a floor, and
the protocol's ``min``/``max`` gates on the pooled interval.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tuneproof.evaluate.bootstrap import summarize, summarize_difference
from tuneproof.federated.spec import BeatsAlone, SiteFloor
from tuneproof.protocol.schema import GateSpec

METRICS = ("accuracy", "macro_f1")


def _metric(conf: np.ndarray, name: str) -> np.ndarray:
    """``name`` of each confusion matrix in ``conf`` (``[..., k, k]``, rows true, columns predicted)."""
    conf = conf.astype(np.float64)
    diag = np.diagonal(conf, axis1=-2, axis2=-1)
    total = conf.sum(axis=(-2, -1))
    if name == "accuracy":
        return np.where(total > 0, diag.sum(-1) / np.maximum(total, 1), np.nan)
    if name == "macro_f1":
        true, pred = conf.sum(-1), conf.sum(-2)
        denom = true + pred
        # sklearn's convention: a class absent from both truth and predictions scores 0.
        f1 = np.where(denom > 0, 2 * diag / np.maximum(denom, 1), 0.0)
        return f1.mean(-1)
    raise KeyError(name)


def scores(point: np.ndarray, replicates: np.ndarray, confidence: float) -> dict[str, Any]:
    return {m: summarize(float(_metric(point, m)), _metric(replicates, m), confidence) for m in METRICS}


def paired(
    fed: tuple[np.ndarray, np.ndarray], alone: tuple[np.ndarray, np.ndarray], confidence: float
) -> dict[str, Any]:
    """Federated minus alone for each metric, from (point, replicates) confusions on the same resamples."""
    return {
        m: summarize_difference(
            float(_metric(fed[0], m)),
            _metric(fed[1], m),
            float(_metric(alone[0], m)),
            _metric(alone[1], m),
            confidence,
        )
        for m in METRICS
    }


def site_and_pooled(tests: list[dict[str, Any]], confidence: float) -> dict[str, Any]:
    """Per-site metrics and the pooled ones; every site must send the same number of replicates.

    Where the sites also sent their own models' confusions (``alone_confusion``/``alone_replicates``,
    the same resamples), ``vs_alone`` holds the paired differences federated - alone, per site and
    pooled (the pooled "alone" is every site's own model on its own rows).
    """
    sites = {
        t["site"]: {"rows": t["rows"], **scores(t["confusion"], t["replicates"], confidence)} for t in tests
    }
    point = sum(t["confusion"] for t in tests)
    reps = sum(t["replicates"] for t in tests)
    pooled = {"rows": int(sum(t["rows"] for t in tests)), **scores(point, reps, confidence)}
    out: dict[str, Any] = {"sites": sites, "pooled": pooled, "confidence": confidence}
    if tests and all("alone_confusion" in t for t in tests):
        vs: dict[str, Any] = {
            t["site"]: {
                "rows": t["rows"],
                "alone": scores(t["alone_confusion"], t["alone_replicates"], confidence),
                **paired(
                    (t["confusion"], t["replicates"]),
                    (t["alone_confusion"], t["alone_replicates"]),
                    confidence,
                ),
            }
            for t in tests
        }
        alone_point = sum(t["alone_confusion"] for t in tests)
        alone_reps = sum(t["alone_replicates"] for t in tests)
        vs["pooled"] = {
            "rows": pooled["rows"],
            "alone": scores(alone_point, alone_reps, confidence),
            **paired((point, reps), (alone_point, alone_reps), confidence),
        }
        out["vs_alone"] = vs
    return out


def judge(
    metrics: dict[str, Any],
    floors: list[SiteFloor],
    gates: list[GateSpec],
    beats: BeatsAlone | None = None,
) -> list[dict[str, Any]]:
    """Gate verdicts, each decided on an interval bound."""
    verdicts = []
    if beats is not None:
        vs = metrics.get("vs_alone", {})
        for site in metrics["sites"]:
            diff = vs.get(site, {}).get(beats.metric)
            low = None if diff is None else diff["low"]
            verdicts.append(
                {
                    "gate": f"federated - alone {beats.metric} > {beats.margin} at site {site}",
                    "passed": low is not None and low > beats.margin,
                    "detail": (
                        "the site sent no scores of its own model"
                        if diff is None
                        else f"paired difference {diff['diff']} [{diff['low']}, {diff['high']}] "
                        f"on {metrics['sites'][site]['rows']} rows"
                    ),
                }
            )
    for floor in floors:
        for site, m in metrics["sites"].items():
            low = _known(m, floor.metric, f"federated.site_floor {floor.metric}")["low"]
            verdicts.append(
                {
                    "gate": f"{floor.metric} >= {floor.min} at site {site}",
                    "passed": low is not None and low >= floor.min,
                    "detail": f"lower bound {low} on {m['rows']} rows",
                }
            )
    for gate in gates:
        est = _known(metrics["pooled"], gate.metric, f"gates {gate.metric}")
        if gate.min is not None:
            ok = est["low"] is not None and est["low"] >= gate.min
            verdicts.append(
                {
                    "gate": f"pooled {gate.metric} >= {gate.min}",
                    "passed": ok,
                    "detail": f"lower bound {est['low']}",
                }
            )
        elif gate.max is not None:
            ok = est["high"] is not None and est["high"] <= gate.max
            verdicts.append(
                {
                    "gate": f"pooled {gate.metric} <= {gate.max}",
                    "passed": ok,
                    "detail": f"upper bound {est['high']}",
                }
            )
    return verdicts


def _known(metrics: dict[str, Any], name: str, where: str) -> dict[str, Any]:
    if name not in metrics:
        raise KeyError(f"{where}: a federated run reports {', '.join(METRICS)}, not {name!r}")
    value: dict[str, Any] = metrics[name]
    return value
