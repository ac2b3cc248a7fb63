"""The report's hyper-parameter search section, read from ``search/summary.json`` and ``trials.json``.

Every page has a place for it, right after the training section; it renders nothing for a run
without a search. It states how the configuration
was selected, compares the best trial with the protocol's own settings, and shows the history,
the parameter importances, every trial (pruned and failed ones with why) and the chosen protocol.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneproof.report import plots
from tuneproof.report.fmt import fmt_duration, fmt_num, fmt_setting
from tuneproof.report.markup import Safe, bar, chip, details, h3, join, kv_table, note, para, pre, table
from tuneproof.report.run_data import RunData, mapping, number, sequence
from tuneproof.report.section import Section

STATE_KIND = {"complete": "pass", "pruned": "warn", "fail": "fail", "running": "info", "waiting": "neutral"}
MAX_TRIAL_ROWS = 500


def _read_json(path: Path) -> Any:
    try:
        if path.stat().st_size > 50_000_000:
            return None
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _short(path: str) -> str:
    return path.removeprefix("train.")


def history_plot(trials: list[dict[str, Any]], metric: str, maximize: bool) -> Safe | None:
    """Each complete trial's validation value by trial number, pruned trials at their last report,
    and the best value so far as a step line."""
    done = [
        (t["number"], v)
        for t in trials
        if t.get("state") == "complete" and (v := number(t.get("value"))) is not None
    ]
    pruned = []
    for t in trials:
        if t.get("state") == "pruned":
            inter = mapping(t.get("intermediate"))
            last = number(inter[max(inter, key=lambda k: int(k))]) if inter else None
            if last is not None:
                pruned.append((t["number"], last))
    if not done and not pruned:
        return None
    with plots._style("search-history"):
        fig = plots._figure(6.0, 3.0)
        ax = fig.subplots()
        if done:
            xs, ys = zip(*sorted(done), strict=True)
            ax.plot(xs, ys, "o", color=plots.MODEL_COLOR, label="complete", markersize=5)
            best, line = None, []
            for x, y in sorted(done):
                best = y if best is None or (y > best if maximize else y < best) else best
                line.append((x, best))
            bx, by = zip(*line, strict=True)
            ax.step(bx, by, where="post", color=plots.PASS_COLOR, linewidth=1.4, label="best so far")
        if pruned:
            px, py = zip(*pruned, strict=True)
            ax.plot(px, py, "x", color=plots.NEUTRAL_COLOR, label="pruned (last report)", markersize=6)
        ax.set_xlabel("trial")
        ax.set_ylabel(f"validation {metric}")
        ax.grid(color="#e5e7eb", linewidth=0.6)
        ax.legend(frameon=False, fontsize=8)
        fig.tight_layout()
        return plots._svg(fig)


def _comparison(summary: dict[str, Any], run: RunData) -> list[str | None]:
    metric = str(summary.get("metric", "metric"))
    best, default = mapping(summary.get("best")), mapping(summary.get("default"))
    parts: list[str | None] = []
    n = mapping(summary.get("trials")).get("complete")
    if best:
        line = f"Chosen: trial {best.get('number')}, validation {metric} {fmt_num(best.get('value'), 4)}"
        if default:
            diff = number(summary.get("improvement_over_default"))
            shown = fmt_num(diff, 4) if diff is not None else "—"
            line += (
                f"; the protocol's own settings (trial {default.get('number')}) reached "
                f"{fmt_num(default.get('value'), 4)}, a difference of {shown}"
            )
        parts.append(para(line + ".", "lead"))
        parts.append(
            note(
                f"The best of {n} trials is picked on the same validation split it is scored on, so its "
                "validation score is optimistic; the test metrics above are the unbiased estimate."
            )
        )
        if not default and summary.get("default_values") is None:
            parts.append(
                note("The protocol's own settings were not run as a trial (outside the space, or off).")
            )
    final = number(mapping(run.metrics.get("validation")).get(metric))
    if best and final is not None:
        same = abs(final - float(best.get("value") or 0.0)) <= 1e-6
        parts.append(
            para(
                f"The final training with the chosen configuration scored validation {metric} "
                f"{fmt_num(final, 4)} "
                + (
                    "(the same as its trial: the search result reproduces)."
                    if same
                    else f"(its trial scored {fmt_num(best.get('value'), 4)})."
                )
            )
        )
    return parts


def _trials_table(trials: list[dict[str, Any]], space: list[str]) -> Safe:
    rows = []
    for t in trials[:MAX_TRIAL_ROWS]:
        params = mapping(t.get("params"))
        state = str(t.get("state", ""))
        label = f"{t.get('number')}{' (default)' if t.get('default') else ''}"
        rows.append(
            [
                label,
                chip(state, STATE_KIND.get(state, "neutral")),
                t.get("value"),
                *[fmt_setting(params[p]) if p in params else "—" for p in space],
                t.get("steps"),
                fmt_duration(number(t.get("seconds"))),
                t.get("reason") or "",
            ]
        )
    headers = [
        "trial",
        "state",
        "validation",
        *[_short(p) for p in space],
        "steps",
        "time",
        "why stopped / failed",
    ]
    out = table(headers, rows, numeric_from=2)
    if len(trials) > MAX_TRIAL_ROWS:
        out = join([out, note(f"{len(trials) - MAX_TRIAL_ROWS} more trials in search/trials.json.")])
    return out


def render(run: RunData) -> str | None:
    folder = run.path / "search"
    summary = mapping(_read_json(folder / "summary.json"))
    if not summary:
        return None
    trials = [mapping(t) for t in sequence(_read_json(folder / "trials.json"))]
    metric = str(summary.get("metric", "metric"))
    maximize = summary.get("direction") != "minimize"
    counts = mapping(summary.get("trials"))
    budget = mapping(summary.get("budget"))
    pruner = mapping(summary.get("pruner"))
    space = list(mapping(summary.get("space")))
    parts: list[str | None] = [
        join(
            [
                chip("selected on validation only", "info"),
                chip("test split opened once, after the search", "pass"),
            ]
        ),
        para(str(summary.get("selection", ""))),
        *_comparison(summary, run),
        kv_table(
            {
                "metric": f"validation {metric} ({summary.get('direction', 'maximize')})",
                "sampler": summary.get("sampler"),
                "pruner": pruner.get("type"),
                "budget": ", ".join(
                    f"{v} {k}"
                    for k, v in (("trials", budget.get("trials")), ("minutes", budget.get("minutes")))
                    if v is not None
                )
                or "—",
                "trials": ", ".join(
                    f"{counts.get(k, 0)} {k}" for k in ("complete", "pruned", "fail") if k in counts
                )
                + f" ({counts.get('total', len(trials))} in all)",
                "search time (leader)": fmt_duration(number(summary.get("search_seconds"))),
                "stopped because": summary.get("stopped_because"),
                "study": f"{summary.get('study_name')} in {summary.get('storage')}",
            }
        ),
        h3("Optimisation history"),
        history_plot(trials, metric, maximize) or note("No trial reported a validation value."),
        h3("Parameter importances"),
    ]
    imp = {str(k): number(v) for k, v in mapping(summary.get("importances")).items()}
    if imp:
        parts.append(
            table(
                ["parameter", "importance (fANOVA)"],
                [[_short(k), bar(v, fmt_num(v))] for k, v in imp.items()],
                numeric_from=2,
            )
        )
        parts.append(
            note(
                "Share of the variance of the validation metric explained by each parameter, over the "
                "complete trials; with few trials this is a rough guide."
            )
        )
    else:
        parts.append(note(f"Not computed: {summary.get('importances_note') or 'too few complete trials'}."))
    parts.append(h3("Trials"))
    parts.append(_trials_table(trials, space) if trials else note("No trials recorded."))
    chosen = folder / "chosen-protocol.yaml"
    if chosen.is_file():
        parts.append(h3("Chosen configuration"))
        parts.append(
            para(
                f"Frozen as {summary.get('chosen_protocol', 'search/chosen-protocol.yaml')}; "
                "it re-runs this configuration without search."
            )
        )
        parts.append(details("chosen-protocol.yaml", pre(chosen.read_text(encoding="utf-8")[:100_000])))
    return join(parts)


SECTION = Section("search", "Hyper-parameter search", render)
ENTRY = (SECTION, "training")  # placed right after the training section
