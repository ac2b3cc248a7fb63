"""Number, interval and metric-name formatting shared by the HTML page, the model card and `show`."""

from __future__ import annotations

from typing import Any

from tuneproof.evaluate.direction import lower_is_better
from tuneproof.report.run_data import mapping, number


def fmt_num(value: Any, digits: int = 3) -> str:
    """Compact number: integers with thousands separators, fractions with ``digits`` decimals."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    x = number(value)
    if x is None:
        return "—" if value is None else str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if x != 0 and abs(x) < 10**-digits:
        return f"{x:.{digits}g}"  # learning rates and p-values would otherwise print as 0.000
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    return f"{x:.{digits}f}"


def as_count(value: float) -> int | float:
    """Whole numbers as int: JSON writers sometimes emit counts as 540.0, which would print as 540.000."""
    return int(value) if value.is_integer() else value


def fmt_setting(value: Any) -> str:
    """A configuration value as written (5e-05, 3, 0.1), not rounded like a metric."""
    if isinstance(value, bool) or value is None:
        return fmt_num(value)
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, dict):
        return ", ".join(f"{k}={fmt_setting(v)}" for k, v in value.items())
    if isinstance(value, list):
        return ", ".join(fmt_setting(v) for v in value)
    return str(value)


def fmt_pct(value: Any, digits: int = 1) -> str:
    x = number(value)
    return "—" if x is None else f"{100 * x:.{digits}f}%"


def interval(value: Any) -> tuple[float | None, float | None, float | None]:
    """(value, low, high) from a metric entry: an interval dict, a bare number, or a diff dict."""
    if isinstance(value, dict):
        point = number(value.get("value", value.get("diff")))
        return point, number(value.get("low")), number(value.get("high"))
    return number(value), None, None


def is_metric_entry(value: Any) -> bool:
    """True for entries shown in metric tables: a bare number or a {value|diff, low, high} dict."""
    if isinstance(value, dict):
        return number(value.get("value", value.get("diff"))) is not None
    return number(value) is not None


def fmt_interval(value: Any, digits: int = 3, signed: bool = False) -> str:
    point, low, high = interval(value)
    if point is None:
        return "—"
    sign = "+" if signed else ""
    text = f"{point:{sign}.{digits}f}"
    if low is not None and high is not None:
        text += f" [{low:{sign}.{digits}f}, {high:{sign}.{digits}f}]"
    return text


def comparison_outcome(metric: str, diff: Any) -> str:
    """'better', 'worse' or 'inconclusive' for a paired difference (model minus baseline)."""
    point, low, high = interval(diff)
    if point is None:
        return "inconclusive"
    if low is None or high is None:
        low = high = point
    sign = -1.0 if lower_is_better(metric) else 1.0
    lo, hi = sorted((sign * low, sign * high))
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    return "inconclusive"


def short_hash(value: Any, keep: int = 12) -> str:
    text = str(value) if value is not None else ""
    return text[:keep] + "…" if len(text) > keep else text or "—"


def fmt_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "—"
    total = round(seconds)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:02d}s"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f}s"


def metric_names(*tables: dict[str, Any]) -> list[str]:
    """Metric names present in any of ``tables`` as table-able entries, in first-seen order."""
    seen: dict[str, None] = {}
    for table in tables:
        for key, value in mapping(table).items():
            if is_metric_entry(value):
                seen.setdefault(str(key), None)
    return list(seen)
