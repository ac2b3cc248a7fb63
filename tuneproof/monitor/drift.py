"""Two-sample drift tests between the reference and a window, each returning a p-value.

Every test is a scipy or scikit-learn routine; what is written here is only the glue and the one
statistic no library ships: the domain classifier's permutation null, which has to split *the
reference* (not the pooled sample) because the threshold must be known from validated data alone.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from tuneproof.monitor.features import Observed

# Below this many values on a side a distribution test says nothing useful; it is reported as n/a.
MIN_ROWS = 20
# PSI's customary smoothing of empty bins, so one unseen category is large but finite.
_PSI_EPS = 1e-4
_DOMAIN_DIMS = 32  # PCA dimensions fed to the domain classifier (fitted on the reference)
_DOMAIN_FOLDS = 5


@dataclass
class DriftTest:
    name: str
    method: str
    p_value: float | None  # None: not applicable to this task or this sample
    statistic: float | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _finite(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x[np.isfinite(x)]


def ks_test(name: str, ref: np.ndarray, win: np.ndarray, what: str) -> DriftTest:
    """Two-sample Kolmogorov-Smirnov; with ties (integer lengths) it is conservative, never liberal."""
    a, b = _finite(ref), _finite(win)
    if min(a.size, b.size) < MIN_ROWS:
        return DriftTest(name, f"KS on {what}", None, note=f"fewer than {MIN_ROWS} values on a side")
    res = stats.ks_2samp(a, b)
    detail = {
        "reference_median": float(np.median(a)),
        "window_median": float(np.median(b)),
        "reference_mean": float(a.mean()),
        "window_mean": float(b.mean()),
        "reference_n": int(a.size),
        "window_n": int(b.size),
    }
    return DriftTest(name, f"KS on {what}", float(res.pvalue), float(res.statistic), detail)


def unknown_token_test(ref: np.ndarray, win: np.ndarray) -> DriftTest:
    """Mann-Whitney U on per-text unknown-token shares: texts, not tokens, are the independent units."""
    a, b = _finite(ref), _finite(win)
    method = "Mann-Whitney U on per-text unknown-token rate"
    detail = {
        "reference_rate": float(a.mean()) if a.size else None,
        "window_rate": float(b.mean()) if b.size else None,
    }
    if min(a.size, b.size) < MIN_ROWS:
        return DriftTest("unknown_tokens", method, None, detail=detail, note=f"fewer than {MIN_ROWS} texts")
    if np.all(a == a[0]) and np.all(b == a[0]):
        # Identical constants (typically no unknown token anywhere): no evidence of any difference.
        return DriftTest("unknown_tokens", method, 1.0, 0.0, detail, "the same rate on every text")
    res = stats.mannwhitneyu(a, b, alternative="two-sided")
    return DriftTest("unknown_tokens", method, float(res.pvalue), float(res.statistic), detail)


def psi(ref_share: np.ndarray, win_share: np.ndarray) -> float:
    """Population stability index, sum (w - r) ln(w / r), with empty bins smoothed."""
    r = np.clip(ref_share, _PSI_EPS, None)
    w = np.clip(win_share, _PSI_EPS, None)
    return float(np.sum((w - r) * np.log(w / r)))


def category_test(ref: Sequence[str | None], win: Sequence[str | None]) -> DriftTest:
    """Chi-square test of homogeneity on the predicted-category counts, with PSI as the effect size."""
    rc = Counter(c for c in ref if c is not None)
    wc = Counter(c for c in win if c is not None)
    return counts_test(
        "predicted_labels",
        "chi-square on predicted-label counts",
        rc,
        wc,
        "categories",
        few="the task predicts no labels or too few rows",
        single="one category on both sides",
    )


def counts_test(
    name: str, method: str, rc: Counter[str], wc: Counter[str], key: str, few: str, single: str
) -> DriftTest:
    """Chi-square of homogeneity on two count tables (reference, window), PSI as the effect size;
    ``key`` names the categories in the detail, ``few`` / ``single`` are the notes when there are
    too few rows on a side or one category in all."""
    if sum(rc.values()) < MIN_ROWS or sum(wc.values()) < MIN_ROWS:
        return DriftTest(name, method, None, note=few)
    cats = sorted(set(rc) | set(wc))
    table = np.array([[rc[c] for c in cats], [wc[c] for c in cats]], dtype=np.float64)
    r_share, w_share = table[0] / table[0].sum(), table[1] / table[1].sum()
    detail = {
        key: cats,
        "reference_share": [float(x) for x in r_share],
        "window_share": [float(x) for x in w_share],
        "psi": psi(r_share, w_share),
    }
    if len(cats) < 2:
        return DriftTest(name, method, 1.0, 0.0, detail, single)
    res = stats.chi2_contingency(table, correction=False)
    return DriftTest(name, method, float(res.pvalue), float(res.statistic), detail)


def _reduce(ref_emb: np.ndarray, dims: int, seed: int) -> Any:
    from sklearn.decomposition import PCA
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    dims = max(1, min(dims, ref_emb.shape[0] - 1, ref_emb.shape[1]))
    return make_pipeline(StandardScaler(), PCA(n_components=dims, random_state=seed)).fit(ref_emb)


def domain_auc(a: np.ndarray, b: np.ndarray, seed: int, folds: int = _DOMAIN_FOLDS) -> float:
    """Cross-validated ROC AUC of a logistic regression telling ``b`` rows from ``a`` rows.

    0.5 means the two samples cannot be told apart; out-of-fold scores keep the estimate honest.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    x = np.vstack([a, b])
    y = np.r_[np.zeros(len(a)), np.ones(len(b))]
    from threadpoolctl import threadpool_limits

    cv = StratifiedKFold(n_splits=min(folds, len(a), len(b)), shuffle=True, random_state=seed)
    # Small fits (hundreds of rows by 32 columns), hundreds per calibration: BLAS threads only add
    # synchronisation (measured here: 10x slower per fit with 2 threads on a busy 2-core machine).
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # convergence chatter on separable folds is not a result
        scores = cross_val_predict(
            LogisticRegression(C=1.0, max_iter=500), x, y, cv=cv, method="predict_proba"
        )[:, 1]
    return float(roc_auc_score(y, scores))


def permutation_null(ref_emb: np.ndarray, window: int, permutations: int, seed: int) -> np.ndarray:
    """Domain-classifier AUCs between random disjoint parts of the reference: the no-drift distribution.

    The pseudo-window has ``min(window, n // 2)`` rows and is compared with the rest, so both sides
    are independent draws from the validated distribution, as a production window without drift is.
    When the real comparison has more rows (the whole reference against the window) the true null is
    narrower than this one, so the calibrated threshold errs on the side of fewer alarms.
    """
    n = ref_emb.shape[0]
    size = min(window, n // 2)
    rng = np.random.default_rng(seed)
    out = np.empty(permutations, dtype=np.float64)
    for i in range(permutations):
        perm = rng.permutation(n)
        out[i] = domain_auc(ref_emb[perm[size:]], ref_emb[perm[:size]], seed + 1 + i)
    return out


def embedding_test(
    ref_emb: np.ndarray | None,
    win_emb: np.ndarray | None,
    permutations: int,
    level: float,
    seed: int,
    null: np.ndarray | None = None,
    basis: np.ndarray | None = None,
) -> DriftTest:
    """Domain classifier on the model's embeddings, its p-value from the reference's permutation null.

    ``basis`` (default ``ref_emb``) is what the PCA reduction is fitted on: the whole reference, also
    when rows repeated in the window were left out of ``ref_emb``, so the null (computed on the whole
    reference) and the comparison live in the same space.
    """
    method = "domain classifier (logistic regression, 5-fold AUC) on embeddings, permutation-calibrated"
    if ref_emb is None or win_emb is None or min(len(ref_emb), len(win_emb)) < MIN_ROWS:
        return DriftTest("embedding", method, None, note="no embeddings or too few rows")
    if len(ref_emb) < 2 * MIN_ROWS:
        return DriftTest(
            "embedding", method, None, note=f"the reference needs {2 * MIN_ROWS} rows to calibrate"
        )
    full = ref_emb if basis is None else basis
    reducer = _reduce(full, _DOMAIN_DIMS, seed)
    r, w = reducer.transform(ref_emb), reducer.transform(win_emb)
    auc = domain_auc(r, w, seed)
    if null is None:
        null = _cached_null(reducer.transform(full), len(w), permutations, seed)
    p = (1.0 + float(np.sum(null >= auc))) / (len(null) + 1.0)
    threshold = float(np.quantile(null, 1.0 - level)) if len(null) else math.nan
    detail = {
        "auc": auc,
        "alarm_auc_threshold": threshold,
        "null_auc_median": float(np.median(null)),
        "null_auc_max": float(np.max(null)),
        "permutations": len(null),
        "pseudo_window": int(min(len(w), len(full) // 2)),
    }
    return DriftTest("embedding", method, p, auc, detail)


_NULLS: dict[tuple[str, int, int, int], np.ndarray] = {}


def _cached_null(ref_reduced: np.ndarray, window: int, permutations: int, seed: int) -> np.ndarray:
    """The null depends only on the reference, the window size and the seed: a process that checks
    many windows (a scheduler loop, the tests) calibrates once per size."""
    import hashlib

    key = (hashlib.sha256(ref_reduced.tobytes()).hexdigest(), window, permutations, seed)
    if key not in _NULLS:
        if len(_NULLS) >= 8:
            _NULLS.pop(next(iter(_NULLS)))
        _NULLS[key] = permutation_null(ref_reduced, window, permutations, seed)
    return _NULLS[key]


def reduced_null(ref_emb: np.ndarray, window: int, permutations: int, seed: int) -> np.ndarray:
    """The permutation null in the same reduced space ``embedding_test`` uses (for callers that score
    many windows against one reference, e.g. the power benchmark, and calibrate once)."""
    reducer = _reduce(ref_emb, _DOMAIN_DIMS, seed)
    return permutation_null(reducer.transform(ref_emb), window, permutations, seed)


def prediction_tests(ref: Observed, win: Observed) -> list[DriftTest]:
    tests = []
    if any(c is not None for c in ref.category):
        tests.append(category_test(ref.category, win.category))
    elif np.isfinite(ref.score).any():  # regression scores, entities per text: their distribution
        t = ks_test("predicted_labels", ref.score, win.score, "predicted scores")
        tests.append(t)
    tests.append(ks_test("confidence", ref.confidence, win.confidence, "confidence"))
    return tests


def drift_tests(
    ref: Observed,
    win: Observed,
    permutations: int,
    level: float,
    seed: int,
    null: np.ndarray | None = None,
    basis: np.ndarray | None = None,
) -> list[DriftTest]:
    """Every input and prediction test, in report order."""
    return [
        ks_test("length", ref.lengths, win.lengths, "token length"),
        unknown_token_test(ref.unk_rate, win.unk_rate),
        embedding_test(ref.embeddings, win.embeddings, permutations, level, seed, null, basis),
        *prediction_tests(ref, win),
    ]
