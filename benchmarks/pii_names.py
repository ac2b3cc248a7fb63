"""PII detection before and after the statistical NER model: per-type precision and recall on both
fixtures, and scan speed on the main job's Rotten Tomatoes snippets.

    PYTHONPATH=. python benchmarks/pii_names.py [--rows 3000] [--repeats 2]

Arms, all at the default ``min_score`` 0.5 and every entity type on:
  heuristic  the name heuristics on a blank spaCy tokeniser (what ran before issue 19)
  ner        the verified spaCy model (tok2vec + ner only) together with the heuristics (the default)
  ner-full   the same with the model's whole pipeline (tagger, parser, lemmatizer...), to show that
             dropping those pipes changes no detection

A detection is right when it overlaps a labelled value of the same type (each used once), as in
tests/unit/test_pii.py. "full R" is stricter: the labelled name is entirely inside PERSON
detections, so no part of it (a first name) is left in the text.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
FIXTURES = {
    "pii_fixture": REPO / "tests" / "fixtures" / "pii_fixture.jsonl",
    "pii_names_fixture": REPO / "tests" / "fixtures" / "pii_names_fixture.jsonl",
}


def _rows(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def score(rows: list[dict[str, Any]], detections: list[list[Any]]) -> dict[str, dict[str, float]]:
    tp: Counter[str] = Counter()
    fp: Counter[str] = Counter()
    fn: Counter[str] = Counter()
    full: Counter[str] = Counter()
    for row, dets in zip(rows, detections, strict=True):
        gold = []
        for e in row["entities"]:
            start = row["text"].index(e["value"])
            gold.append([e["type"], start, start + len(e["value"]), False])
        for d in dets:
            hit = next(
                (g for g in gold if not g[3] and g[0] == d.entity_type and d.start < g[2] and g[1] < d.end),
                None,
            )
            if hit:
                hit[3] = True
                tp[d.entity_type] += 1
            else:
                fp[d.entity_type] += 1
        for g in gold:
            covered = set()
            for d in dets:
                if d.entity_type == g[0]:
                    covered.update(range(d.start, d.end))
            full[g[0]] += set(range(g[1], g[2])) <= covered
            if not g[3]:
                fn[g[0]] += 1
    out = {}
    for t in sorted(set(tp) | set(fn) | set(fp)):
        n = tp[t] + fn[t]
        out[t] = {
            "n": n,
            "precision": tp[t] / max(1, tp[t] + fp[t]),
            "recall": tp[t] / n if n else float("nan"),
            "full_recall": full[t] / n if n else float("nan"),
        }
    return out


def _key(dets: list[list[Any]]) -> list[list[tuple[str, int, int]]]:
    return [[(d.entity_type, d.start, d.end) for d in row] for row in dets]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", type=int, default=3000, help="Rotten Tomatoes snippets timed per arm")
    ap.add_argument("--repeats", type=int, default=2, help="timed passes per arm (the best is kept)")
    args = ap.parse_args()

    sys.path.insert(0, str(REPO))
    from benchmarks.data import rotten_tomatoes
    from tuneproof.data import pii
    from tuneproof.data.pii_ner import verify_model

    info = verify_model()
    print(f"model: {info.describe()}; meta.json verified at {info.path}")
    arms = {
        "heuristic": pii.build_engines("heuristic"),
        "ner": pii.build_engines("auto"),
        "ner-full": pii.build_engines("auto", ner_pipes=info.pipeline),
    }
    entities = list(pii.ENTITY_TYPES)
    results: dict[str, Any] = {"quality": {}, "speed": {}, "same_as_full_pipeline": {}}
    for fx, path in FIXTURES.items():
        rows = _rows(path)
        texts = [r["text"] for r in rows]
        dets = {arm: pii.analyze_with(eng, texts, entities, 0.5) for arm, eng in arms.items()}
        results["same_as_full_pipeline"][fx] = _key(dets["ner"]) == _key(dets["ner-full"])
        results["quality"][fx] = {arm: score(rows, d) for arm, d in dets.items() if arm != "ner-full"}

    df = rotten_tomatoes()
    snippets = [str(t) for t in df["text"].tolist()[: args.rows]]
    for arm, eng in arms.items():
        pii.analyze_with(eng, snippets[:50], entities, 0.5)  # load the model before timing
        best = float("inf")
        for _ in range(args.repeats):
            t0 = time.perf_counter()
            out = pii.analyze_with(eng, snippets, entities, 0.5)
            best = min(best, time.perf_counter() - t0)
        results["speed"][arm] = {"rows": len(snippets), "seconds": best, "rows_per_s": len(snippets) / best}
        if arm == "ner":
            ner_key = _key(out)
        if arm == "ner-full":
            results["same_as_full_pipeline"]["rotten_tomatoes"] = ner_key == _key(out)

    for fx, by_arm in results["quality"].items():
        print(f"\n{fx} ({len(_rows(FIXTURES[fx]))} texts)")
        print("| type | n | heuristic P | heuristic R | NER+heuristic P | NER+heuristic R |")
        print("|---|---|---|---|---|---|")
        for t in sorted(by_arm["ner"]):
            h, n = by_arm["heuristic"].get(t), by_arm["ner"][t]
            hp = f"{h['precision']:.2f} | {h['recall']:.2f}" if h else "- | -"
            print(f"| {t} | {n['n']} | {hp} | {n['precision']:.2f} | {n['recall']:.2f} |")
        h, n = by_arm["heuristic"]["PERSON"], by_arm["ner"]["PERSON"]
        print(
            f"PERSON whole-name recall: heuristic {h['full_recall']:.2f}, "
            f"NER+heuristic {n['full_recall']:.2f}"
        )
    print("\nspeed on Rotten Tomatoes snippets (best of", args.repeats, "passes):")
    base = results["speed"]["heuristic"]["rows_per_s"]
    for arm, sp in results["speed"].items():
        print(f"  {arm:10s} {sp['rows_per_s']:8.0f} rows/s  ({sp['rows_per_s'] / base:.2f}x heuristic)")
    print("detections identical with the full pipeline:", results["same_as_full_pipeline"])
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
