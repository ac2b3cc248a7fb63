"""The federation's report: per-round curves, the per-site table, each site's contribution.

Reads only the server's run folder (``federation.json``, ``metrics.json``, ``gates.json``, the
sites' counts in ``sites/<site>/data_report.json``), so it holds no row of any site. Writes
``report.html`` and ``model_card.md`` there; ``tuneproof show`` prints the same tables and
``tuneproof verify`` re-hashes the folder against its ``manifest.json`` (``kind: federation``).
The run-folder report of a local run (tuneproof/report) is built around one test split, one
training log and a run manifest; a federation has neither, so it gets these few tables instead.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tuneproof.errors import RunFolderError
from tuneproof.fsutil import atomic_write_text, sha256_file

Rows = list[list[str]]


def _read(path: Path) -> Any:
    return json.loads(path.read_text()) if path.is_file() else None


def is_federation(run_dir: Path) -> bool:
    manifest = _read(run_dir / "manifest.json")
    return isinstance(manifest, dict) and manifest.get("kind") == "federation"


def _iv(v: dict[str, Any] | None, key: str = "value") -> str:
    if not v or v.get(key) is None:
        return "-"
    low, high = v.get("low"), v.get("high")
    bounds = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{v[key]:+.3f}{bounds}" if key == "diff" else f"{v[key]:.3f}{bounds}"


def _num(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


def round_rows(state: dict[str, Any]) -> Rows:
    """One row per round and site: the incoming global model's validation scores, the local loss."""
    rows = [
        ["round", "site", "global val accuracy", "global val macro-F1", "train loss", "examples", "weight"]
    ]
    for r in state.get("rounds", []):
        for site, m in sorted(r.get("sites", {}).items()):
            rows.append(
                [
                    str(r["round"]),
                    site,
                    _num(m.get("global_val_accuracy")),
                    _num(m.get("global_val_macro_f1")),
                    _num(m.get("train_loss")),
                    str(int(m.get("num-examples", 0))),
                    _num(r.get("contribution", {}).get(site)),
                ]
            )
        for site in r.get("missing", []):
            rows.append([str(r["round"]), site, "missing", "", "", "", "0"])
    return rows


def traffic_rows(state: dict[str, Any]) -> Rows:
    rows = [["round", "status", "seconds", "bytes sent", "bytes received", "answered"]]
    for r in state.get("rounds", []):
        rows.append(
            [
                str(r["round"]),
                str(r.get("status")),
                _num(r.get("seconds"), 1),
                f"{r.get('bytes_sent', 0):,}",
                f"{r.get('bytes_received', 0):,}",
                ", ".join(r.get("answered", [])),
            ]
        )
    return rows


def site_rows(run_dir: Path, state: dict[str, Any], metrics: dict[str, Any] | None) -> Rows:
    """Per site: its rows by split, its share of the aggregation, its test scores (and vs alone)."""
    metrics = metrics or {}
    vs = metrics.get("vs_alone", {})
    rows = [
        [
            "site",
            "train / val / test rows",
            "share of aggregation",
            "test accuracy",
            "test macro-F1",
            "alone accuracy",
            "federated - alone (accuracy)",
        ]
    ]
    aggregated = [r for r in state.get("rounds", []) if r.get("status") == "aggregated"]
    sites = sorted(state.get("sites", {}))
    for site in [*sites, "pooled"]:
        if site == "pooled":
            m = metrics.get("pooled", {})
            split_rows = {
                k: sum(int(state["sites"][s]["rows"].get(k, 0)) for s in sites)
                for k in ("train", "validation")
            }
            split_rows["test"] = m.get("rows", "-")
            share = "1.000" if aggregated else "-"
        else:
            m = metrics.get("sites", {}).get(site, {})
            split_rows = state["sites"][site]["rows"]
            weights = [r.get("contribution", {}).get(site, 0.0) for r in aggregated]
            share = _num(sum(weights) / len(weights)) if weights else "-"
        counts = " / ".join(str(split_rows.get(k, "-")) for k in ("train", "validation", "test"))
        alone = vs.get(site, {})
        rows.append(
            [
                site,
                counts,
                share,
                _iv(m.get("accuracy")),
                _iv(m.get("macro_f1")),
                _iv(alone.get("alone", {}).get("accuracy")),
                _iv(alone.get("accuracy"), "diff"),
            ]
        )
    return rows


def gate_rows(gates: list[dict[str, Any]] | None) -> Rows:
    return [["verdict", "gate", "detail"]] + [
        ["PASS" if g.get("passed") else "FAIL", str(g.get("gate")), str(g.get("detail"))] for g in gates or []
    ]


def _load(run_dir: Path) -> tuple[dict[str, Any], dict[str, Any] | None, list[dict[str, Any]] | None]:
    state = _read(run_dir / "federation.json")
    if not isinstance(state, dict):
        raise RunFolderError(f"{run_dir} is not a federation's run folder (no federation.json)")
    return state, _read(run_dir / "metrics.json"), _read(run_dir / "gates.json")


def how_run(state: dict[str, Any]) -> str:
    """How the federation ran: the engine(s) and whether the server saw each site's weights."""
    engines = {"processes": "Flower processes", "simulation": "Flower's simulation engine"}
    # One entry per start of the federation; a resume on the same engine says nothing new.
    started = list(dict.fromkeys(state.get("engines", [])))
    ran = ", then ".join(engines.get(e, e) for e in started) or "unknown"
    if state.get("secure_aggregation"):
        rounds = [r["secure_aggregation"] for r in state.get("rounds", []) if "secure_aggregation" in r]
        secure: dict[str, Any] = rounds[0] if rounds else {}
        clip = secure.get("clipping_range")
        detail = f" (weights quantised on +-{clip} at 2**22 levels)" if clip else ""
        agg = (
            "secure aggregation (SecAgg+): the server unmasked only the weighted sum of the sites' "
            f"weights{detail}"
        )
    else:
        agg = "plain aggregation: the server saw each site's weights"
    return f"run on: {ran}; {agg}"


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] + "."


def _text_table(rows: Rows) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]


def summary_text(run_dir: Path) -> str:
    """What ``tuneproof show`` prints for a federation."""
    state, metrics, gates = _load(run_dir)
    done = sum(1 for r in state.get("rounds", []) if r.get("status") == "aggregated")
    lines = [
        f"federation {run_dir}  [{str(state.get('status')).upper()}]  "
        f"deployable: {'yes' if state.get('deployable') else 'no'}  rounds aggregated: {done}",
    ]
    lines.append(how_run(state))
    if state.get("error"):
        lines.append(f"error: {state['error']}")
    if state.get("resumed"):
        lines.append("resumed after round(s): " + ", ".join(str(r["from_round"]) for r in state["resumed"]))
    conf = (metrics or {}).get("confidence", 0.95)
    lines += [f"sites (test scores with {conf:.0%} intervals, each on its own test split):"]
    lines += _text_table(site_rows(run_dir, state, metrics))
    lines += ["rounds (validation scores of the global model each site received):"]
    lines += _text_table(round_rows(state))
    lines += ["traffic:", *_text_table(traffic_rows(state))]
    lines += ["gates:", *(_text_table(gate_rows(gates)) if gates else ["  not evaluated"])]
    return "\n".join(lines)


def _curves(state: dict[str, Any]) -> str | None:
    from tuneproof.report.plots import training_curves

    losses: dict[str, list[tuple[float, float]]] = {}
    accs: dict[str, list[tuple[float, float]]] = {}
    for r in state.get("rounds", []):
        for site, m in sorted(r.get("sites", {}).items()):
            if m.get("train_loss") is not None:
                losses.setdefault(f"{site} train", []).append((r["round"], float(m["train_loss"])))
            if m.get("global_val_accuracy") is not None:
                accs.setdefault(f"{site} accuracy", []).append((r["round"], float(m["global_val_accuracy"])))
    svg = training_curves(losses, accs)
    return None if svg is None else str(svg)


def _html_table(rows: Rows) -> str:
    from html import escape

    head = "".join(f"<th>{escape(c)}</th>" for c in rows[0])
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def write_report(run_dir: Path, name: str) -> None:
    """``report.html`` and ``model_card.md`` in the server's run folder."""
    from html import escape

    state, metrics, gates = _load(run_dir)
    curves = _curves(state)
    status = str(state.get("status"))
    html = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>{escape(name)}: federation</title>
<style>body{{font-family:sans-serif;max-width:70rem;margin:2rem auto}}table{{border-collapse:collapse;
margin:0.5rem 0 1.5rem}}td,th{{border:1px solid #ddd;padding:0.25rem 0.5rem;text-align:right}}
td:first-child,th:first-child{{text-align:left}}</style></head><body>
<h1>{escape(name)}: federation, {escape(status)}</h1>
<p>Deployable: {"yes" if state.get("deployable") else "no"}. Every figure below comes from what the
sites sent: counts, hashes, metrics, confusion counts of bootstrap resamples and weights; no row.
{escape(_sentence(how_run(state)))}</p>
<h2>Sites</h2>
<p>Test scores with intervals, each on the site's own test split; pooled is a bootstrap stratified
by site. Share of aggregation: the site's mean weight in the rounds' averages (its training
examples over the round's total).</p>
{_html_table(site_rows(run_dir, state, metrics))}
<h2>Gates</h2>
{_html_table(gate_rows(gates))}
<h2>Rounds</h2>
<p>Per round (x axis) and site: the local training loss, and the accuracy of the global model the
site received, on its validation split.</p>
{curves or "<p>No aggregated round.</p>"}
{_html_table(round_rows(state))}
<h2>Traffic</h2>
{_html_table(traffic_rows(state))}
</body></html>
"""
    atomic_write_text(run_dir / "report.html", html)
    card = [
        f"# {name} (federated)",
        "",
        f"Status: {status}; deployable: {'yes' if state.get('deployable') else 'no'}.",
        "Trained by federated learning (Flower): each site's data stayed at the site; the server saw",
        "counts, hashes, metrics and weights only. Scores are on each site's own test split.",
        _sentence(how_run(state)),
        "",
        "## Sites",
        "",
        *_md_table(site_rows(run_dir, state, metrics)),
        "",
        "## Gates",
        "",
        *_md_table(gate_rows(gates)),
        "",
        "## Limitations",
        "",
        "- A site's scores hold for data like that site's; a new site was not tested.",
        "- The pooled figure weights sites by their test rows.",
    ]
    atomic_write_text(run_dir / "model_card.md", "\n".join(card) + "\n")


def _md_table(rows: Rows) -> list[str]:
    return [
        "| " + " | ".join(rows[0]) + " |",
        "|" + "---|" * len(rows[0]),
        *("| " + " | ".join(r) + " |" for r in rows[1:]),
    ]


def verify_federation(run_dir: Path) -> dict[str, list[str]]:
    """Files changed, missing, or added since the federation's manifest was written."""
    from tuneproof.federated.server import hashed_files

    recorded: dict[str, str] = json.loads((run_dir / "manifest.json").read_text())["files"]
    current = {rel: sha256_file(run_dir / rel) for rel in hashed_files(run_dir)}
    return {
        "changed": sorted(f for f in recorded if f in current and current[f] != recorded[f]),
        "missing": sorted(f for f in recorded if f not in current),
        "added": sorted(f for f in current if f not in recorded),
    }
