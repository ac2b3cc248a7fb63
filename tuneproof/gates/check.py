"""Acceptance gates decided on bootstrap intervals, giving the ``gates.json`` layout.

A gate that cannot be decided (unknown metric or baseline, a metric undefined on this test set, no
slices) fails with a detail saying why: a gate must never pass because nothing was checked. A gate
on a test split smaller than :func:`rows_needed` is *undecidable*: it fails whatever the point
estimates say, and its verdict says the data, not the model, is the reason.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Collection, Mapping, Sequence
from fnmatch import fnmatchcase
from typing import Any

from tuneproof.errors import Problem
from tuneproof.evaluate.direction import lower_is_better
from tuneproof.evidence import GateReport, GateVerdict
from tuneproof.gates.family import Method, adjusted_alphas
from tuneproof.protocol.schema import GateSpec

# Metrics on a 0-1 scale where 1 is best, and where 0 is best: on these a threshold implies a least
# number of test rows (see rows_needed).
BOUNDED_HIGHER_IS_BETTER = frozenset(
    {
        "accuracy",
        "macro_f1",
        "micro_f1",
        "f1",
        "precision",
        "recall",
        "macro_precision",
        "macro_recall",
        "micro_precision",
        "micro_recall",
        "subset_accuracy",
        "exact_match",
        "rouge_l",
        "roc_auc",
    }
)
BOUNDED_LOWER_IS_BETTER = frozenset({"ece"})

_MISSING = object()


def rows_needed(gate: GateSpec, confidence: float) -> int:
    """The fewest test rows on which ``gate`` can be decided at ``confidence`` at all.

    With n rows all judged correct, the exact (Clopper-Pearson) lower bound of a proportion is
    (alpha/2)^(1/n): below ln(alpha/2) / ln(t) rows even a perfect model cannot show a rate above t,
    while a percentile bootstrap would report [1, 1] and pass. The same bound on errors applies to
    ``max`` gates on 0-1 metrics where 0 is best. For every other gate (``beats``, unbounded metrics)
    the floor is the sign test's: with fewer than log2(2/alpha) rows (6 at 95%) even a unanimous result
    is what chance gives more often than alpha/2. F1 and similar are not binomial proportions; for them
    this is a necessary condition, not a sufficient one.
    """
    alpha = 1.0 - confidence
    floor = math.ceil(math.log2(2.0 / alpha) - 1e-9)
    leaf = gate.metric.rsplit(".", 1)[-1]
    if gate.min is not None and leaf in BOUNDED_HIGHER_IS_BETTER and 0.0 < gate.min < 1.0:
        return max(floor, math.ceil(math.log(alpha / 2) / math.log(gate.min) - 1e-9))
    if gate.max is not None and leaf in BOUNDED_LOWER_IS_BETTER and 0.0 < gate.max < 1.0:
        return max(floor, math.ceil(math.log(alpha / 2) / math.log(1.0 - gate.max) - 1e-9))
    return floor


def _lookup(node: Any, path: str) -> Any:
    """Resolve a dotted name against nested dicts; a key may itself hold dots (a label like ``v1.2``)."""
    if not isinstance(node, Mapping):
        return _MISSING
    if path in node:
        return node[path]
    for key in node:
        if isinstance(key, str) and path.startswith(key + "."):
            found = _lookup(node[key], path[len(key) + 1 :])
            if found is not _MISSING:
                return found
    return _MISSING


def _is_number(x: Any) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool)


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


class _Judge:
    def __init__(self, metrics: Mapping[str, Any]) -> None:
        self.model: Mapping[str, Any] = metrics.get("model") or {}
        self.comparisons: Mapping[str, Any] = metrics.get("comparisons") or {}
        self.slices: Sequence[Mapping[str, Any]] = metrics.get("slices") or []
        confidence = metrics.get("confidence")
        self.level = f"{100 * confidence:g}%" if isinstance(confidence, int | float) else "the"

    def verdict(
        self,
        gate: GateSpec,
        passed: bool,
        *,
        threshold: float | None,
        decided_on: str,
        detail: str,
        observed: float | None = None,
        low: float | None = None,
        high: float | None = None,
    ) -> GateVerdict:
        return GateVerdict(
            gate=gate.label,
            passed=passed,
            metric=gate.metric,
            observed=observed,
            low=low,
            high=high,
            threshold=threshold,
            decided_on=decided_on,
            detail=detail,
            kind=_kind(gate),
            baseline=gate.beats,
        )

    def undecidable(self, gate: GateSpec, n: int, need: int) -> GateVerdict:
        threshold = {"min": gate.min, "max": gate.max, "beats": gate.by, "slice_min": gate.slice_min}[
            _kind(gate)
        ]
        out = self.verdict(
            gate,
            False,
            threshold=threshold,
            decided_on=f"nothing: the test split is too small ({n} rows)",
            detail=f"undecidable: the test split has {n} rows and this gate needs at least {need} to be "
            f"decided at the {self.level} level (with fewer, even a perfect score could not clear it); "
            "the run is not deployable whatever the point estimates say",
        )
        out.undecidable = True
        return out

    def unknown_metric(self, gate: GateSpec, threshold: float | None) -> GateVerdict:
        known = sorted(k for k, v in self.model.items() if isinstance(v, Mapping) and "value" in v)
        hint = difflib.get_close_matches(gate.metric, known, n=1)
        detail = f"unknown metric {gate.metric!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
        return self.verdict(
            gate,
            False,
            threshold=threshold,
            decided_on="nothing: the metric was not found",
            detail=f"{detail}; known: {', '.join(known) or 'none'}",
        )

    def bound(self, gate: GateSpec) -> GateVerdict:
        is_min = gate.min is not None
        threshold = gate.min if is_min else gate.max
        assert threshold is not None
        op, side = (">=", "lower") if is_min else ("<=", "upper")
        entry = _lookup(self.model, gate.metric)
        if entry is _MISSING:
            return self.unknown_metric(gate, threshold)
        if entry is None:
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                decided_on="nothing: the metric is undefined",
                detail=f"{gate.metric} is undefined on this test set (e.g. a class is absent)",
            )
        if _is_number(entry):
            # Nested metrics (per class) are stored as point estimates: there is no interval to use.
            point = float(entry)
            passed = point >= threshold if is_min else point <= threshold
            return self.verdict(
                gate,
                passed,
                threshold=threshold,
                observed=point,
                decided_on="point estimate (per-class metrics carry no interval)",
                detail=f"point estimate {_fmt(point)} {op if passed else 'fails ' + op} {threshold:g}",
            )
        if not (isinstance(entry, Mapping) and "value" in entry):
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                decided_on="nothing: not a single metric",
                detail=f"{gate.metric!r} names a group of values, not one metric",
            )
        value, low, high = entry.get("value"), entry.get("low"), entry.get("high")
        decided = low if is_min else high
        decided_on = f"{side} bound of {self.level} interval"
        if decided is None:
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                observed=value,
                low=low,
                high=high,
                decided_on=decided_on,
                detail=f"{gate.metric} has no {side} bound",
            )
        passed = decided >= threshold if is_min else decided <= threshold
        detail = f"{side} bound {_fmt(decided)} {op if passed else 'fails ' + op} {threshold:g}"
        detail += f" (point estimate {_fmt(value)})"
        if not passed and value is not None and (value >= threshold if is_min else value <= threshold):
            detail += "; the point estimate alone would pass, but the interval is too wide to be sure"
        return self.verdict(
            gate,
            passed,
            threshold=threshold,
            observed=value,
            low=low,
            high=high,
            decided_on=decided_on,
            detail=detail,
        )

    def beats(self, gate: GateSpec) -> GateVerdict:
        baseline, lower = gate.beats, lower_is_better(gate.metric)
        assert baseline is not None
        threshold = -gate.by if lower else gate.by
        side, op = ("upper", "<=") if lower else ("lower", ">=")
        decided_on = f"{side} bound of {self.level} paired bootstrap difference (model - {baseline})"
        if lower:
            decided_on += f"; lower {gate.metric} is better"
        if baseline not in self.comparisons:
            known = ", ".join(sorted(self.comparisons)) or "none"
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                decided_on="nothing: the baseline was not found",
                detail=f"baseline {baseline!r} was not evaluated; evaluated: {known}",
            )
        comparison = _lookup(self.comparisons[baseline], gate.metric)
        if comparison is _MISSING:
            if _lookup(self.model, gate.metric) is _MISSING:
                return self.unknown_metric(gate, threshold)
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                decided_on="nothing: no paired comparison",
                detail=f"no paired comparison of {gate.metric!r} with {baseline}; "
                "'beats' needs a top-level metric with an interval",
            )
        if not isinstance(comparison, Mapping) or comparison.get("low" if not lower else "high") is None:
            return self.verdict(
                gate,
                False,
                threshold=threshold,
                decided_on=decided_on,
                detail=f"the difference in {gate.metric} is undefined on this test set",
            )
        diff, low, high = comparison.get("diff"), comparison["low"], comparison["high"]
        decided = high if lower else low
        passed = decided <= threshold if lower else decided >= threshold
        detail = (
            f"{side} bound of difference {_fmt(decided)} {op if passed else 'fails ' + op} {threshold:g} "
            f"(difference {_fmt(diff)})"
        )
        return self.verdict(
            gate,
            passed,
            threshold=threshold,
            observed=diff,
            low=low,
            high=high,
            decided_on=decided_on,
            detail=detail,
        )

    def slice_floor(self, gate: GateSpec) -> GateVerdict:
        floor = gate.slice_min
        assert floor is not None
        if not self.slices:
            return self.verdict(
                gate,
                False,
                threshold=floor,
                decided_on="nothing: no slices",
                detail="no slices were evaluated, so there is nothing to check",
            )
        if not any(isinstance(s.get("intervals"), Mapping) for s in self.slices):
            return self._slice_points(gate, floor)
        return self._slice_bounds(gate, floor)

    def _slice_bounds(self, gate: GateSpec, floor: float) -> GateVerdict:
        """Every gated slice's lower bound >= floor; slices under the size floor are listed, not gated."""
        decided_on = f"lower bound of the {self.level} interval of every gated slice"
        gated: list[tuple[str, int, float | None, float | None]] = []
        shown: list[str] = []
        missing: list[str] = []
        for s in self.slices:
            name, n = str(s.get("name")), int(s.get("n", 0))
            if s.get("gated") is False:
                shown.append(f"{name} (n={n})")
                continue
            entry = _lookup(s.get("intervals") or {}, gate.metric)
            if not isinstance(entry, Mapping):
                missing.append(name)
                continue
            gated.append((name, n, entry.get("value"), entry.get("low")))
        if missing:
            return self.verdict(
                gate,
                False,
                threshold=floor,
                decided_on=decided_on,
                detail=f"slices lack an interval for {gate.metric!r}: {', '.join(missing)}",
            )
        not_gated = (
            f"; shown but not gated (below evaluate.slice_min_rows): {', '.join(shown)}" if shown else ""
        )
        if not gated:
            return self.verdict(
                gate,
                False,
                threshold=floor,
                decided_on="nothing: every slice is below evaluate.slice_min_rows",
                detail="no slice is large enough to be gated, so there is nothing to check" + not_gated,
            )
        below = [
            f"{name} (n={n}): lower bound {_fmt(low)} (point {_fmt(value)})"
            for name, n, value, low in gated
            if low is None or low < floor
        ]
        lows = [low for _, _, _, low in gated if low is not None]
        worst = min(lows) if lows else None
        values = [v for _, _, v, _ in gated if v is not None]
        detail = (
            f"below {floor:g}: {'; '.join(below)}"
            if below
            else f"all {len(gated)} gated slices have lower bound >= {floor:g} (lowest {_fmt(worst)})"
        )
        return self.verdict(
            gate,
            not below,
            threshold=floor,
            observed=min(values) if values else None,
            low=worst,
            decided_on=decided_on,
            detail=detail + not_gated,
        )

    def _slice_points(self, gate: GateSpec, floor: float) -> GateVerdict:
        """Slices written without intervals (runs before slice intervals): their point estimates."""
        decided_on = "point estimate of every slice (this evaluation has no slice intervals)"
        values: list[tuple[str, int, float]] = []
        missing: list[str] = []
        for s in self.slices:
            v = _lookup(s.get("metrics") or {}, gate.metric)
            if _is_number(v):
                values.append((str(s.get("name")), int(s.get("n", 0)), float(v)))
            else:
                missing.append(str(s.get("name")))
        if missing:
            return self.verdict(
                gate,
                False,
                threshold=floor,
                decided_on=decided_on,
                detail=f"slices lack metric {gate.metric!r}: {', '.join(missing)}",
            )
        below = [f"{name} (n={n}): {_fmt(v)}" for name, n, v in values if v < floor]
        worst = min(v for _, _, v in values)
        detail = (
            f"below {floor:g}: {'; '.join(below)}"
            if below
            else f"all {len(values)} slices >= {floor:g} (lowest {_fmt(worst)})"
        )
        return self.verdict(
            gate, not below, threshold=floor, observed=worst, decided_on=decided_on, detail=detail
        )


def _kind(gate: GateSpec) -> str:
    for kind in ("min", "max", "beats", "slice_min"):
        if getattr(gate, kind) is not None:
            return kind
    raise ValueError("gate has no kind")  # GateSpec's validator makes this unreachable


def check_gates(
    gates: Sequence[GateSpec], metrics: Mapping[str, Any], family: Method = "individual"
) -> GateReport:
    """Decide every gate against a ``metrics.json`` dict; the result is what ``gates.json`` holds.

    ``min``: the interval's lower bound >= threshold. ``max``: its upper bound <= threshold.
    ``beats``: the paired difference's lower bound >= ``by`` (upper bound <= ``-by`` for metrics
    where lower is better, ``tuneproof.evaluate.direction``). ``slice_min``: every slice's point
    estimate >= floor. Nested names such as
    ``per_class.fresh.f1`` have point estimates only, and the verdict says so.

    ``family`` ``holm`` or ``bonferroni`` (``evaluate.gate_family``) judges the gates together from
    the bootstrap p-values in ``metrics["gate_tests"]`` (:mod:`tuneproof.gates.family`): a gate then
    passes when its interval verdict passes *and* its p-value meets its corrected level.
    """
    judge = _Judge(metrics)
    n = metrics.get("n")
    confidence = metrics.get("confidence")
    level = float(confidence) if isinstance(confidence, int | float) and 0 < confidence < 1 else 0.95
    verdicts = []
    for gate in gates:
        kind = _kind(gate)
        need = rows_needed(gate, level)
        if isinstance(n, int) and not isinstance(n, bool) and n < need:
            verdicts.append(judge.undecidable(gate, n, need))
        elif kind in ("min", "max"):
            verdicts.append(judge.bound(gate))
        elif kind == "beats":
            verdicts.append(judge.beats(gate))
        else:
            verdicts.append(judge.slice_floor(gate))
    undecidable = [v.gate for v in verdicts if v.undecidable]
    report = GateReport(passed=all(v.passed for v in verdicts), undecidable=undecidable, verdicts=verdicts)
    if family != "individual" and verdicts:
        _judge_as_family(report, metrics, family, level)
    return report


def _judge_as_family(
    report: GateReport, metrics: Mapping[str, Any], family: Method, confidence: float
) -> None:
    tests = metrics.get("gate_tests")
    rows = list(tests) if isinstance(tests, Sequence) else []
    by_label = {str(t.get("gate")): t.get("p") for t in rows if isinstance(t, Mapping)}
    p_values = [p if _is_number(p := by_label.get(v.gate)) else None for v in report.verdicts]
    alpha = 1.0 - confidence
    levels = adjusted_alphas(p_values, alpha, family)
    name = {"holm": "Holm", "bonferroni": "Bonferroni"}[family]
    for v, p, lvl in zip(report.verdicts, p_values, levels, strict=True):
        v.p_value, v.level = p, lvl
        if v.undecidable:
            continue
        ok = p is not None and lvl > 0 and p <= lvl
        if p is None:
            v.detail += (
                f"; {name}: no bootstrap p-value for this gate, so it cannot pass as one of the family"
            )
        elif lvl == 0:
            v.detail += f"; {name}: p = {p:.3g}, not tested (a gate with a smaller p-value failed first)"
        else:
            v.detail += f"; {name}: p = {p:.3g} {'<=' if ok else '>'} {lvl:.3g}"
        v.passed = v.passed and ok
    report.passed = all(v.passed for v in report.verdicts)
    m = len(report.verdicts)
    report.family = {
        "method": family,
        "confidence": confidence,
        "gates": m,
        "statement": f"{name} correction over {m} gates: every pass claimed holds at {confidence:.0%} "
        f"together (family-wise error <= {alpha:.3g})",
    }


def _known(name: str, known: Collection[str]) -> bool:
    # Exact names first: a label may contain fnmatch characters such as '['; only '*' entries are patterns.
    return name in known or any("*" in k and fnmatchcase(name, k) for k in known)


def validate_gate_names(
    gates: Sequence[GateSpec],
    known_metrics: Collection[str],
    known_baselines: Collection[str],
    slice_metrics: Collection[str] | None = None,
) -> list[Problem]:
    """Problems with the names gates refer to, found before any training, with paths like ``gates[1].metric``.

    ``known_metrics`` may hold ``*`` patterns (``per_class.*.f1``) when the labels are not known yet.
    ``slice_metrics``, when given, lists the metrics slices report, for checking ``slice_min`` gates.
    """
    problems: list[Problem] = []
    plain = sorted(k for k in known_metrics if "*" not in k and "." not in k)
    for i, gate in enumerate(gates):
        where = f"gates[{i}]"
        if not _known(gate.metric, known_metrics):
            hint = difflib.get_close_matches(gate.metric, [k for k in known_metrics if "*" not in k], n=1)
            msg = f"unknown metric {gate.metric!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
            problems.append(Problem(f"{where}.metric", f"{msg}; known: {', '.join(plain)}"))
        if gate.beats is not None:
            if gate.beats not in known_baselines:
                known = ", ".join(sorted(known_baselines)) or "none"
                problems.append(
                    Problem(
                        f"{where}.beats",
                        f"baseline {gate.beats!r} is not evaluated; evaluate.baselines: {known}",
                    )
                )
            if "." in gate.metric:
                problems.append(
                    Problem(
                        f"{where}.metric",
                        f"'beats' needs a top-level metric with a paired "
                        f"comparison; {gate.metric!r} is a point estimate only",
                    )
                )
        if gate.slice_min is not None and slice_metrics is not None and gate.metric not in slice_metrics:
            problems.append(
                Problem(
                    f"{where}.metric", f"slices report only {', '.join(slice_metrics)}, not {gate.metric!r}"
                )
            )
    return problems
