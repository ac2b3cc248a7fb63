"""The `search` section: what a protocol may ask for, how values are applied, the frozen protocol."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tuneproof.errors import ProtocolError
from tuneproof.protocol import load_protocol, parse_protocol, validation_context
from tuneproof.search.freeze import frozen_protocol_text
from tuneproof.search.space import contains, current_values, grid_space, with_params
from tuneproof.search.study import default_study_name, direction_for, mask_url, storage_url

BASE = "name: s\nmodel: {source: m}\ndata: {files: [d.jsonl], labels: [neg, pos]}\n"
LR = "train.learning_rate: {type: float, low: 1.0e-5, high: 1.0e-3, log: true}"


def search(body: str, extra: str = "") -> str:
    return BASE + extra + "search:\n" + "".join(f"  {line}\n" for line in body.strip().splitlines())


def test_every_kind_of_distribution_parses() -> None:
    p = parse_protocol(
        search(
            "space:\n"
            f"  {LR}\n"
            "  train.batch_size: {type: categorical, choices: [8, 16, 32]}\n"
            "  train.epochs: {type: int, low: 1, high: 4}\n"
            "  train.warmup_ratio: {type: float, low: 0.0, high: 0.2, step: 0.05}\n"
            "budget: {trials: 10, minutes: 5}\n"
            "pruner: {type: hyperband, min_resource: 2}"
        )
    )
    s = p.search
    assert s.sampler == "tpe" and s.pruner.type == "hyperband" and s.budget.trials == 10
    assert s.space["train.learning_rate"].log and s.space["train.batch_size"].choices == [8, 16, 32]
    assert s.space["train.epochs"].grid() == [1, 2, 3, 4]
    assert s.space["train.warmup_ratio"].grid() == [0.0, 0.05, 0.1, 0.15, 0.2]


@pytest.mark.parametrize(
    ("body", "extra", "expected"),
    [
        (
            "space: {train.learning_rate: {low: 1.0e-5, high: 2.0}}\nbudget: {trials: 2}",
            "",
            "value 2.0 is not allowed",
        ),
        (
            "space: {train.nope: {low: 1, high: 2}}\nbudget: {trials: 2}",
            "",
            "'train.nope' is not a protocol setting",
        ),
        (
            "space: {model.max_length: {type: int, low: 16, high: 64}}\nbudget: {trials: 2}",
            "",
            "only training settings (train.*)",
        ),
        (
            "space: {train.precision: {type: categorical, choices: [fp32, bf16]}}\nbudget: {trials: 2}",
            "",
            "except train.precision",
        ),
        (
            "space: {train.early_stopping.patience: {type: int, low: 1, high: 3}}\nbudget: {trials: 2}",
            "",
            "train.early_stopping is not set",
        ),
        (f"space: {{{LR}}}", "", "budget needs `trials`, `minutes` or both"),
        ("sampler: grid\nspace: {train.learning_rate: {low: 1.0e-5, high: 1.0e-3}}", "", "needs `step`"),
        (
            "space: {train.learning_rate: {low: 0.0, high: 1.0e-3, log: true}}\nbudget: {trials: 2}",
            "",
            "log: true needs low > 0",
        ),
        (
            "space: {train.batch_size: {type: categorical, choices: [8, 8]}}\nbudget: {trials: 2}",
            "",
            "choices has duplicates",
        ),
        (
            "space: {train.batch_size: {type: categorical, choices: [8, 0]}}\nbudget: {trials: 2}",
            "",
            "value 0 is not allowed",
        ),
        (
            f"space: {{{LR}}}\nbudget: {{trials: 2}}",
            "split: {train: 0.9, validation: 0.0, test: 0.1}\n",
            "search needs a validation split",
        ),
        (f"space: {{{LR}}}\nbudget: {{trials: 2}}\nstorage: study.db", "", "storage must be an RDB URL"),
        (f"space: {{{LR}}}\nbudget: {{trials: 2}}\nsamplr: tpe", "", "unknown key"),
    ],
)
def test_invalid_search_sections_are_refused_with_the_reason(body: str, extra: str, expected: str) -> None:
    with pytest.raises(ProtocolError) as info:
        parse_protocol(search(body, extra))
    assert expected in str(info.value)


def test_a_protocol_without_search_is_unchanged() -> None:
    assert parse_protocol(BASE).search is None


def test_values_are_applied_validated_and_the_search_dropped() -> None:
    p = parse_protocol(search(f"space: {{{LR}}}\nbudget: {{trials: 2}}", "train: {learning_rate: 0.0001}\n"))
    trial = with_params(p, {"train.learning_rate": 3e-4, "train.lora.r": 4}, validation_context())
    assert trial.train.learning_rate == 3e-4 and trial.train.lora.r == 4 and trial.search is None
    assert p.train.learning_rate == 1e-4  # the original is untouched
    assert current_values(p, p.search) == {"train.learning_rate": 1e-4}
    with pytest.raises(ValueError):
        with_params(p, {"train.learning_rate": -1.0}, validation_context())


def test_contains_and_grid() -> None:
    p = parse_protocol(
        search(
            "sampler: grid\nspace:\n  train.epochs: {type: int, low: 1, high: 5, step: 2}\n"
            "  train.scheduler: {type: categorical, choices: [linear, cosine]}"
        )
    )
    epochs, sched = p.search.space["train.epochs"], p.search.space["train.scheduler"]
    assert grid_space(p.search) == {"train.epochs": [1, 3, 5], "train.scheduler": ["linear", "cosine"]}
    assert p.search.grid_size() == 6
    assert contains(epochs, 3) and not contains(epochs, 2) and not contains(epochs, 7)
    assert contains(sched, "cosine") and not contains(sched, "constant")


def test_study_name_storage_and_direction() -> None:
    a = parse_protocol(search(f"space: {{{LR}}}\nbudget: {{trials: 2}}"))
    b = parse_protocol(search(f"space: {{{LR}}}\nbudget: {{trials: 2}}\nstorage: postgresql://u:pw@db/x"))
    c = parse_protocol(search(f"space: {{{LR}}}\nbudget: {{trials: 3}}"))
    # Where the study lives does not change its name; what it searches does.
    assert default_study_name(a) == default_study_name(b) != default_study_name(c)
    assert storage_url(a.search, Path("/r")) == "sqlite:////r/search/study.db"
    assert storage_url(b.search, Path("/r")) == "postgresql://u:pw@db/x"
    assert storage_url(a.search, None, "mysql://h/db") == "mysql://h/db"
    assert mask_url("postgresql://u:secret@db:5432/x") == "postgresql://u:***@db:5432/x"
    assert direction_for(a.search, "macro_f1") == "maximize" and direction_for(a.search, "loss") == "minimize"


def test_the_frozen_protocol_reruns_without_search(tmp_path: Path) -> None:
    proto_dir = tmp_path / "proj"
    (proto_dir / "model").mkdir(parents=True)
    (proto_dir / "d.jsonl").write_text("")
    text = (
        "name: s\nmodel: {source: ./model}\ndata: {files: [d.jsonl], labels: [neg, pos]}\n"
        f"search:\n  space: {{{LR}}}\n  budget: {{trials: 2}}\n"
    )
    (proto_dir / "p.yaml").write_text(text)
    loaded = load_protocol(proto_dir / "p.yaml")
    chosen = with_params(loaded.protocol, {"train.learning_rate": 2.5e-4}, validation_context())
    out = tmp_path / "run" / "search" / "chosen-protocol.yaml"
    out.parent.mkdir(parents=True)
    out.write_text(frozen_protocol_text(chosen, loaded.base_dir, ["chosen by trial 3"]))
    assert out.read_text().startswith("# chosen by trial 3\n")
    again = load_protocol(out).protocol
    assert again.search is None and again.train.learning_rate == 2.5e-4
    assert again.model.source == str((proto_dir / "model").resolve())
    assert again.data.files == [str((proto_dir / "d.jsonl").resolve())]
    assert again.output_dir == str((proto_dir / "runs").resolve())
    assert yaml.safe_load(out.read_text())["train"] == chosen.model_dump(mode="json")["train"]
