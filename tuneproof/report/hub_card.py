"""The Hugging Face metadata of a run's model card, built with huggingface_hub's ModelCardData.

Everything comes from the run folder (protocol, metrics, gates, manifest) plus, for the license,
the base model's own card when that model is on this machine. Values the Hub cannot know are said
plainly rather than guessed: no ``base_model`` for a model without a hub id, ``license: other``
with the reason when the base model's license cannot be read.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData

from tuneproof.report.fmt import lower_is_better
from tuneproof.report.run_data import RunData, dig, mapping, number, sequence
from tuneproof.report.sections.overview import describe_location

# The Hub's pipeline tag for each task: what widget and inference API a pushed model gets.
PIPELINE_TAGS = {
    "classification": "text-classification",
    "multilabel": "text-classification",
    "regression": "text-classification",  # a one-output sequence-classification head
    "token_classification": "token-classification",
    "sft": "text-generation",
    "dapt": "text-generation",
    "seq2seq": "text2text-generation",
}
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def hub_id(source: Any) -> str | None:
    """The model's hub id when the protocol named one (``owner/name``); None for folders and packages."""
    if isinstance(source, str) and _HUB_ID.match(source) and not source.startswith((".", "/", "~")):
        return source
    return None


def _base_model_folder(run: RunData) -> Path | None:
    source = dig(run.protocol, "model", "source")
    if isinstance(source, dict) and source.get("package"):
        spec = importlib.util.find_spec(str(source["package"]))
        if spec is None or not spec.submodule_search_locations:
            return None
        return Path(next(iter(spec.submodule_search_locations))) / str(source.get("path") or ".")
    if isinstance(source, str) and hub_id(source) is None:
        base = Path(str(run.manifest.get("protocol_dir") or "."))
        return (base / source).expanduser()
    return None


def base_model_license(run: RunData) -> tuple[str | None, str]:
    """The base model's license from its own card, and where it was read (or why it was not)."""
    source = dig(run.protocol, "model", "source")
    readme: Path | None = None
    if (repo := hub_id(source)) is not None:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(repo, "README.md", revision=dig(run.protocol, "model", "revision"))
        readme = Path(cached) if isinstance(cached, str) else None
    elif (folder := _base_model_folder(run)) is not None:
        readme = folder / "README.md"
    if readme is None or not readme.is_file():
        return None, "the base model's card (README.md) is not on this machine"
    license_id = ModelCard.load(readme).data.get("license")
    if not license_id:
        return None, f"the base model's card ({readme.name}) names no license"
    return str(license_id), f"from the base model's card ({describe_location(source)})"


def dataset_names(run: RunData) -> list[str]:
    """The training data as the protocol names them (file, or package:path)."""
    return [describe_location(f) for f in sequence(dig(run.protocol, "data", "files"))]


def eval_results(run: RunData, task_type: str) -> list[EvalResult]:
    """One model-index entry per test metric: the value, and its interval in ``metric_args``."""
    metrics = run.metrics
    split = str(metrics.get("split") or "test")
    results = []
    for name, entry in run.model_metrics.items():
        block = mapping(entry)
        value = number(block.get("value"))
        if value is None:
            continue
        args: dict[str, Any] = {"confidence": run.confidence}
        low, high = number(block.get("low")), number(block.get("high"))
        if low is not None and high is not None:
            args |= {"low": low, "high": high, "interval": "bootstrap"}
        if number(metrics.get("bootstrap_samples")) is not None:
            args["bootstrap_samples"] = metrics["bootstrap_samples"]
        if number(metrics.get("n")) is not None:
            args["n"] = metrics["n"]
        args["lower_is_better"] = lower_is_better(name)
        results.append(
            EvalResult(
                task_type=task_type,
                dataset_type=run.name,
                dataset_name=f"{run.name} ({split} split)",
                dataset_split=split,
                metric_type=name,
                metric_value=value,
                metric_name=f"{name} ({split})",
                metric_args=args,
            )
        )
    return results


def card_data(run: RunData) -> ModelCardData:
    task_type = PIPELINE_TAGS.get(run.task, "other")
    license_id, license_source = base_model_license(run)
    tuneproof: dict[str, Any] = {
        "status": run.status,
        "deployable": run.deployable,
        "task": run.task,
        "version": run.manifest.get("tuneproof_version"),
        "protocol_sha256": run.manifest.get("protocol_sha256"),
        "base_model_source": describe_location(dig(run.protocol, "model", "source")),
        "license_source": license_source,
    }
    if run.verdicts:
        tuneproof["gates_passed"] = sum(1 for v in run.verdicts if v.get("passed") is True)
        tuneproof["gates_failed"] = sum(1 for v in run.verdicts if v.get("passed") is False)
    return ModelCardData(
        model_name=run.name,
        base_model=hub_id(dig(run.protocol, "model", "source")),
        license=license_id or "other",
        datasets=dataset_names(run) or None,
        pipeline_tag=task_type,
        library_name="transformers",
        tags=["tuneproof", run.task],
        eval_results=eval_results(run, task_type) or None,
        tuneproof={k: v for k, v in tuneproof.items() if v is not None},
    )
