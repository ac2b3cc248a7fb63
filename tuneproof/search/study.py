"""Run the protocol's search as an Optuna study: trials on the validation split, in one or many workers.

One process leads (``tuneproof run``): it creates the study, runs trials, waits for trials other
workers still run, picks the best, and only then hands over to the final training and the single
read of the test split. Any number of ``tuneproof search-worker`` processes, on this machine or
others, join the same study through its storage and only run trials. Trials never see the test
split: they get the train and validation features and nothing else.

Optuna rather than a hand-written loop because it already does what a cluster search needs: an RDB
storage that many processes share safely, samplers that account for trials still running
(``constant_liar``), heartbeats that fail and re-queue the trials of a worker that died, pruners,
and parameter importances.
"""

from __future__ import annotations

import gc
import math
import os
import shutil
import socket
import statistics
import sys
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tuneproof.errors import Interrupted, SearchError, TrainingDiverged, TrialFailed
from tuneproof.evaluate.direction import direction as metric_direction
from tuneproof.protocol.loader import validation_context
from tuneproof.search.schema import SearchSpec
from tuneproof.search.space import contains, current_values, grid_space, suggest, with_params

SEARCH_DIR = "search"
STUDY_FILE = "study.db"
TRIALS_FILE = "trials.json"
SUMMARY_FILE = "summary.json"
CHOSEN_FILE = "chosen-protocol.yaml"
HEARTBEAT_S = 30
GRACE_S = 120
SELECTION_STATEMENT = (
    "Trials were compared on the validation split only. No trial received the test split: the search "
    "was handed the train and validation features and nothing else. The test split was tokenised and "
    "scored once, after the search, for the chosen configuration."
)
MIN_TRIALS_FOR_IMPORTANCE = 5


@dataclass
class TrialContext:
    """What every trial of this process needs; built once, so trials reuse the tokenised data."""

    protocol: Any  # the Protocol, with its search section
    task: Any  # labels already set
    ref: Any
    tokenizer: Any
    features: dict[str, list[dict[str, Any]]]  # train and validation only
    precision: str
    scratch: Path  # trial checkpoints, deleted after each trial
    metric: str
    direction: str
    log: Any = print

    @property
    def spec(self) -> SearchSpec:
        spec: SearchSpec = self.protocol.search
        return spec


@dataclass
class SearchOutcome:
    chosen: Any  # the Protocol the search chose, without search
    best: dict[str, Any]
    summary: dict[str, Any]
    trials: list[dict[str, Any]] = field(default_factory=list)


# -- naming, storage, sampler, pruner -------------------------------------------------------------


def search_metric(protocol: Any, task: Any) -> str:
    """The validation metric trials are compared on: the loop's own selection metric by default."""
    if protocol.search.metric:
        return str(protocol.search.metric)
    es = protocol.train.early_stopping
    return str(es.metric if es else task.selection_metric)


def direction_for(spec: SearchSpec, metric: str) -> str:
    if spec.direction:
        return spec.direction
    return metric_direction(metric)


def default_study_name(protocol: Any) -> str:
    """Protocol name + a hash of everything but where the study is stored: the leader and its workers
    compute the same name from the same file without being told it."""
    import hashlib
    import json

    raw = protocol.model_dump(mode="json")
    raw["search"].pop("storage", None)
    digest = hashlib.sha256(json.dumps(raw, sort_keys=True).encode()).hexdigest()[:10]
    return f"{protocol.name}-{digest}"


def storage_url(spec: SearchSpec, run_dir: Path | None, override: str | None = None) -> str:
    url = override or os.environ.get("TUNEPROOF_SEARCH_STORAGE") or spec.storage
    if url:
        return url
    if run_dir is None:
        raise SearchError(
            "no study storage: give --storage URL (the leader prints it), set search.storage, "
            "or TUNEPROOF_SEARCH_STORAGE"
        )
    return f"sqlite:///{(run_dir / SEARCH_DIR / STUDY_FILE).resolve()}"


def mask_url(url: str) -> str:
    """The URL without its password, for logs and the run folder."""
    from sqlalchemy.engine import make_url

    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # not a URL SQLAlchemy understands: show only its scheme
        return url.split("://", 1)[0] + "://…"


def open_storage(url: str) -> Any:
    import optuna

    engine_kwargs: dict[str, Any] = {}
    if url.startswith("sqlite"):
        # Several local workers write one SQLite file; wait for the lock instead of failing at once.
        engine_kwargs["connect_args"] = {"timeout": 60}
    # A worker killed mid-trial leaves it RUNNING; once its heartbeat is stale it is failed and queued
    # again with the same values (the callback's name changed in Optuna 4.9).
    retry = getattr(optuna.storages, "RetryHeartbeatStaleTrialCallback", None)
    from sqlalchemy.exc import IntegrityError, OperationalError

    for attempt in range(3):
        with _quiet_optuna():
            callback = (
                {"heartbeat_stale_trial_callback": retry(max_retry=2)}
                if retry is not None
                else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=2)}
            )
            try:
                return optuna.storages.RDBStorage(
                    url,
                    engine_kwargs=engine_kwargs,
                    heartbeat_interval=HEARTBEAT_S,
                    grace_period=GRACE_S,
                    **callback,
                )
            except (OperationalError, IntegrityError):
                # Two processes creating the tables of a new database at once (the loser sees a lock,
                # or its alembic_version row already written): one wins, the other finds them on its
                # next try.
                if attempt == 2:
                    raise
                time.sleep(1.0 + attempt)
    raise AssertionError("unreachable")


@contextmanager
def _quiet_optuna() -> Iterator[None]:
    """Heartbeats are marked experimental in Optuna; the warning says nothing a user can act on."""
    from optuna.exceptions import ExperimentalWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ExperimentalWarning)
        yield


def make_sampler(spec: SearchSpec, seed: int) -> Any:
    import optuna

    if spec.sampler == "grid":
        return optuna.samplers.GridSampler(grid_space(spec), seed=seed)
    if spec.sampler == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    # constant_liar: a trial still running elsewhere counts as a poor result, so parallel workers
    # do not all pile onto the same promising point.
    return optuna.samplers.TPESampler(seed=seed, n_startup_trials=spec.startup_trials, constant_liar=True)


def make_pruner(spec: SearchSpec) -> Any:
    import optuna

    p = spec.pruner
    if p.type == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_steps)
    if p.type == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=p.min_resource, reduction_factor=p.reduction_factor
        )
    return optuna.pruners.NopPruner()


def open_study(spec: SearchSpec, url: str, name: str, seed: int, direction: str) -> Any:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    optuna.logging.disable_default_handler()  # tuneproof prints one line per trial itself
    return optuna.create_study(
        storage=open_storage(url),
        study_name=name,
        sampler=make_sampler(spec, seed),
        pruner=make_pruner(spec),
        direction="minimize" if direction == "minimize" else "maximize",
        load_if_exists=True,
    )


# -- one trial ------------------------------------------------------------------------------------


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def failure_reason(exc: BaseException) -> str:
    import torch

    text = " ".join(str(exc).split())[:400]
    if isinstance(exc, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return f"out of memory: {text}"
    if isinstance(exc, TrainingDiverged):
        return f"diverged: {text}"
    return f"{type(exc).__name__}: {text}"


def value_at_best(log_history: list[dict[str, Any]], best_step: int | None, metric: str) -> float | None:
    """The validation metric of the model the trial hands back: at its best step, else its last evaluation."""
    key = f"eval_{metric}"
    evals = [e for e in log_history if key in e]
    if not evals:
        return None
    chosen = next((e for e in evals if e["step"] == best_step), evals[-1])
    return float(chosen[key])


def _prune_reason(trial: Any, spec: SearchSpec, metric: str, step: int, value: float) -> str:
    import optuna

    if spec.pruner.type == "median":
        done = trial.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        peers = [t.intermediate_values[step] for t in done if step in t.intermediate_values]
        median = f" {statistics.median(peers):.4f}" if peers else ""
        return (
            f"pruned at step {step} by the median pruner: validation {metric} {value:.4f} was worse "
            f"than the median{median} of the {len(peers)} complete trials at that step"
        )
    return (
        f"pruned at step {step} by Hyperband: validation {metric} {value:.4f} was not in the best "
        f"1/{spec.pruner.reduction_factor} of its bracket at that rung"
    )


class _Reporter:
    """The loop's on_log hook: report each validation to Optuna and stop the trial if it should be pruned."""

    def __init__(self, trial: Any, spec: SearchSpec, metric: str) -> None:
        self.trial, self.spec, self.metric = trial, spec, metric

    def __call__(self, entry: dict[str, Any]) -> None:
        import optuna

        key = f"eval_{self.metric}"
        if key not in entry:
            return
        value, step = float(entry[key]), int(entry["step"])
        if not math.isfinite(value):
            raise TrialFailed(f"validation {self.metric} is not finite ({value}) at step {step}")
        self.trial.report(value, step)
        if self.trial.should_prune():
            reason = _prune_reason(self.trial, self.spec, self.metric, step, value)
            self.trial.set_user_attr("prune_reason", reason)
            raise optuna.TrialPruned(reason)


def run_one_trial(ctx: TrialContext, trial: Any) -> float:
    """Optuna's objective: a fresh model trained with this trial's values; its validation metric."""
    import optuna

    from tuneproof.tasks.registry import get_task
    from tuneproof.train.fit import fit

    params = suggest(trial, ctx.spec)
    trial.set_user_attr("worker", worker_id())
    ckdir = ctx.scratch / f"trial-{trial.number}"
    started = time.monotonic()
    try:
        try:
            protocol = with_params(ctx.protocol, params, validation_context())
        except (KeyError, ValueError) as exc:
            raise TrialFailed(f"invalid configuration: {' '.join(str(exc).split())[:300]}") from exc
        task = get_task(protocol, ctx.task.env)
        task.labels = list(ctx.task.labels)
        # fit() builds a new model object every time: accelerate does not re-wrap a model it already
        # prepared, so reusing one would silently train later trials in another precision.
        result = fit(
            task,
            protocol,
            ctx.ref,
            ctx.tokenizer,
            ctx.features,
            ckdir,
            ctx.precision,
            on_log=_Reporter(trial, ctx.spec, ctx.metric),
        )
        train = result.train
        del result
    except optuna.TrialPruned:
        raise
    except (Interrupted, KeyboardInterrupt):
        trial.set_user_attr("fail_reason", "interrupted: the search stopped during this trial; it runs again")
        trial.study.enqueue_trial(params, user_attrs={"retry_of": trial.number})
        raise
    except TrialFailed as exc:
        trial.set_user_attr("fail_reason", exc.reason)
        raise
    except Exception as exc:
        reason = failure_reason(exc)
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason) from exc
    finally:
        shutil.rmtree(ckdir, ignore_errors=True)
        gc.collect()
    value = value_at_best(train.log_history, train.best_step, ctx.metric)
    if value is None or not math.isfinite(value):
        reason = f"no finite validation {ctx.metric} was recorded"
        trial.set_user_attr("fail_reason", reason)
        raise TrialFailed(reason)
    trial.set_user_attr("steps", train.steps)
    trial.set_user_attr("best_step", train.best_step)
    trial.set_user_attr("stopped_early", train.stopped_early)
    trial.set_user_attr("train_seconds", round(time.monotonic() - started, 2))
    return value


# -- the budget loop ------------------------------------------------------------------------------


def counted_trials(study: Any) -> int:
    """Trials that use up the budget: all but queued ones and those that will run again
    (interrupted by a signal, or failed because their worker died)."""
    from optuna.trial import TrialState

    n = 0
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.WAITING:
            continue
        reason = t.user_attrs.get("fail_reason")
        if t.state == TrialState.FAIL and (reason is None or reason.startswith("interrupted")):
            continue
        n += 1
    return n


def trial_limit(spec: SearchSpec) -> int | None:
    if spec.budget.trials is not None:
        return spec.budget.trials
    return spec.grid_size() if spec.sampler == "grid" else None


def run_trials(study: Any, ctx: TrialContext, leader: bool, poll_s: float = 5.0) -> dict[str, Any]:
    """Run trials until the budget is spent; the leader then waits for trials other workers still run.

    The trial count is checked before each trial against the whole study, so workers share it; two
    workers that check at the same moment can overshoot it by at most one trial each.
    """
    import optuna
    from optuna.trial import TrialState

    spec = ctx.spec
    limit = trial_limit(spec)
    started = time.monotonic()
    deadline = started + spec.budget.minutes * 60 if spec.budget.minutes else None
    ran = 0
    numbers: list[int] = []  # the trial numbers this process ran, for its progress lines

    def objective(trial: Any) -> float:
        numbers.append(trial.number)
        return run_one_trial(ctx, trial)

    stop_why = ""
    waiting_since: float | None = None
    while True:
        with _quiet_optuna():
            optuna.storages.fail_stale_trials(study)
        if limit is not None and counted_trials(study) >= limit:
            stop_why = stop_why or f"trial budget reached ({limit})"
        elif deadline is not None and time.monotonic() >= deadline:
            stop_why = stop_why or f"time budget reached ({spec.budget.minutes:g} min)"
        elif (
            spec.sampler == "grid"
            and study.sampler.is_exhausted(study)
            and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        ):
            stop_why = stop_why or "every grid point was tried"
        else:
            with _quiet_optuna():  # optimize() fails stale trials too
                study.optimize(objective, n_trials=1, catch=(TrialFailed,))
            ran += 1
            _log_trial(ctx, study, numbers[-1])
            continue
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        if not leader or not running:
            break
        if waiting_since is None:
            waiting_since = time.monotonic()
            ctx.log(f"[search] {stop_why}; waiting for {len(running)} trial(s) running in other workers")
        time.sleep(poll_s)
    return {"stopped_because": stop_why, "seconds": round(time.monotonic() - started, 1), "trials_here": ran}


def _log_trial(ctx: TrialContext, study: Any, number: int) -> None:
    from optuna.trial import TrialState

    t = next((t for t in study.get_trials(deepcopy=False) if t.number == number), None)
    if t is None:
        return
    values = ", ".join(f"{k.removeprefix('train.')}={_fmt(v)}" for k, v in t.params.items())
    if t.state == TrialState.COMPLETE:
        what = f"validation {ctx.metric} {t.value:.4f}"
    else:
        what = t.user_attrs.get("prune_reason") or t.user_attrs.get("fail_reason") or t.state.name.lower()
    ctx.log(f"[search] trial {t.number} {t.state.name.lower()}: {what} ({values})")


def _fmt(v: Any) -> str:
    return f"{v:.3g}" if isinstance(v, float) else str(v)


# -- results --------------------------------------------------------------------------------------


def _iso(dt: datetime | None) -> str | None:
    return (
        dt.replace(tzinfo=UTC).isoformat()
        if dt is not None and dt.tzinfo is None
        else (dt.isoformat() if dt is not None else None)
    )


def export_trials(study: Any) -> list[dict[str, Any]]:
    from optuna.trial import TrialState

    rows = []
    for t in study.get_trials(deepcopy=False):
        reason = t.user_attrs.get("prune_reason") or t.user_attrs.get("fail_reason")
        if t.state == TrialState.FAIL and reason is None:
            reason = "its worker stopped responding (no heartbeat); the trial was queued again"
        seconds = (
            (t.datetime_complete - t.datetime_start).total_seconds()
            if t.datetime_complete and t.datetime_start
            else None
        )
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "params": t.params,
                "intermediate": {str(k): v for k, v in sorted(t.intermediate_values.items())},
                "reason": reason,
                "default": bool(t.user_attrs.get("default", False)),
                "retry_of": t.user_attrs.get("retry_of", t.system_attrs.get("failed_trial")),
                "worker": t.user_attrs.get("worker"),
                "steps": t.user_attrs.get("steps"),
                "best_step": t.user_attrs.get("best_step"),
                "started_at": _iso(t.datetime_start),
                "finished_at": _iso(t.datetime_complete),
                "seconds": seconds,
            }
        )
    return rows


def importances(study: Any, seed: int) -> tuple[dict[str, float], str | None]:
    """fANOVA importances of the parameters over the complete trials, or why there are none."""
    from optuna.importance import FanovaImportanceEvaluator, get_param_importances
    from optuna.trial import TrialState

    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) < MIN_TRIALS_FOR_IMPORTANCE:
        return {}, f"needs at least {MIN_TRIALS_FOR_IMPORTANCE} complete trials (there are {len(complete)})"
    try:
        values = get_param_importances(study, evaluator=FanovaImportanceEvaluator(seed=seed))
    except (RuntimeError, ValueError) as exc:
        return {}, str(exc)
    return {k: round(float(v), 4) for k, v in values.items()}, None


def best_trial(study: Any, direction: str) -> Any:
    from optuna.trial import TrialState

    complete = [
        t
        for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        if t.value is not None and math.isfinite(t.value)
    ]
    if not complete:
        return None
    sign = -1.0 if direction == "maximize" else 1.0
    # Ties go to the earliest trial, so the outcome does not depend on which worker finished first.
    return min(complete, key=lambda t: (sign * t.value, t.number))


def enqueue_default(study: Any, protocol: Any, spec: SearchSpec, log: Any) -> dict[str, Any] | None:
    """Queue the protocol's own values as a trial: the configuration the search has to beat."""
    values = current_values(protocol, spec)
    outside = [
        k
        for k, v in values.items()
        # A grid trial off the grid would use up one of the grid's points in the budget.
        if not contains(spec.space[k], v) or (spec.sampler == "grid" and v not in spec.space[k].grid())
    ]
    if outside:
        log(f"[search] the protocol's own {', '.join(outside)} is outside the space; not run as a trial")
        return None
    # A grid sampler does not count an enqueued trial as its grid point and would run it twice: the
    # grid already holds the default, which the summary finds by its values.
    if spec.sampler != "grid" and not study.get_trials(deepcopy=False):
        study.enqueue_trial(values, user_attrs={"default": True})
    return values


def summarise(
    study: Any,
    ctx: TrialContext,
    url: str,
    name: str,
    seed: int,
    loop: dict[str, Any],
    default_values: dict[str, Any] | None,
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    trials = export_trials(study)
    best = best_trial(study, ctx.direction)
    default = next((t for t in trials if t["default"] and t["state"] == "complete"), None)
    if default is None and default_values is not None:
        default = next(
            (t for t in trials if t["state"] == "complete" and t["params"] == default_values), None
        )
        if default is not None:
            default["default"] = True
    imp, imp_note = importances(study, seed)
    states = ("complete", "pruned", "fail", "running", "waiting")
    counts = {s: sum(t["state"] == s for t in trials) for s in states}
    summary = {
        "metric": ctx.metric,
        "direction": ctx.direction,
        "split": "validation",
        "selection": SELECTION_STATEMENT,
        "sampler": ctx.spec.sampler,
        "pruner": ctx.spec.pruner.model_dump(mode="json"),
        "budget": ctx.spec.budget.model_dump(mode="json"),
        "space": {k: v.model_dump(mode="json") for k, v in ctx.spec.space.items()},
        "study_name": name,
        "storage": mask_url(url),
        "seed": seed,
        "trials": {"total": len(trials), **counts, "counted_against_budget": counted_trials(study)},
        "search_seconds": loop["seconds"],
        "stopped_because": loop["stopped_because"],
        "best": None if best is None else {"number": best.number, "value": best.value, "params": best.params},
        "default": None
        if default is None
        else {"number": default["number"], "value": default["value"], "params": default["params"]},
        "default_values": default_values,
        "importances": imp,
        "importances_note": imp_note,
        "finished_at": datetime.now(UTC).isoformat(),
    }
    if best is not None and default is not None:
        summary["improvement_over_default"] = best.value - default["value"]
    return summary, trials


# -- entry points ---------------------------------------------------------------------------------


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def run_search(ctx: TrialContext, run_dir: Path, seed: int) -> SearchOutcome:
    """Lead a search whose study lives in the run folder (or ``search.storage``); return the choice."""
    from tuneproof.fsutil import atomic_write_json

    spec = ctx.spec
    folder = run_dir / SEARCH_DIR
    folder.mkdir(parents=True, exist_ok=True)
    url = storage_url(spec, run_dir)
    name = spec.study_name or default_study_name(ctx.protocol)
    study = open_study(spec, url, name, seed, ctx.direction)
    check_study(study, ctx)
    default_values = enqueue_default(study, ctx.protocol, spec, ctx.log) if spec.include_default else None
    ctx.log(
        f"[search] study {name} in {mask_url(url)}; {spec.sampler} sampler, {spec.pruner.type} pruner, "
        f"budget {_budget_text(spec)}; metric validation {ctx.metric} ({ctx.direction})"
    )
    ctx.log(
        f"[search] more workers can join: tuneproof search-worker PROTOCOL --storage '{mask_url(url)}' "
        f"--study-name {name}"
    )
    loop = run_trials(study, ctx, leader=True)
    summary, trials = summarise(study, ctx, url, name, seed, loop, default_values)
    atomic_write_json(folder / TRIALS_FILE, trials)
    best = summary["best"]
    if best is None:
        atomic_write_json(folder / SUMMARY_FILE, summary)
        raise SearchError(f"no trial completed ({summary['trials']}); see {folder / TRIALS_FILE}")
    chosen = with_params(ctx.protocol, best["params"], validation_context())
    summary["chosen_protocol"] = f"{SEARCH_DIR}/{CHOSEN_FILE}"
    atomic_write_json(folder / SUMMARY_FILE, summary)
    ctx.log(
        f"[search] chose trial {best['number']}: validation {ctx.metric} {best['value']:.4f} "
        f"({', '.join(f'{k}={_fmt(v)}' for k, v in best['params'].items())})"
    )
    return SearchOutcome(chosen, best, summary, trials)


def _budget_text(spec: SearchSpec) -> str:
    parts = []
    if (limit := trial_limit(spec)) is not None:
        parts.append(f"{limit} trials")
    if spec.budget.minutes:
        parts.append(f"{spec.budget.minutes:g} min")
    return " / ".join(parts)


def check_study(study: Any, ctx: TrialContext) -> None:
    """Every process of one study must train on the same data: compare the splits' content hashes."""
    mine = {k: _features_hash(v) for k, v in ctx.features.items()}
    recorded = study.user_attrs.get("features")
    if recorded is None:
        study.set_user_attr("features", mine)
        study.set_user_attr("metric", ctx.metric)
    elif recorded != mine:
        raise SearchError(
            "this process's train/validation data differ from the study's (another data file, seed or "
            "cleaning setting?); a worker must run the same protocol on the same data"
        )


def _features_hash(features: list[dict[str, Any]]) -> str:
    import hashlib

    h = hashlib.sha256()
    for f in features:
        h.update(f"{f.get('row_id')}\x1f{f.get('labels')}\x1f{f.get('input_ids')}\x1e".encode())
    return h.hexdigest()[:16]


def load_finished(run_dir: Path) -> dict[str, Any] | None:
    """The summary of a search that already chose (an interrupted run resumes after it)."""
    import json

    path = run_dir / SEARCH_DIR / SUMMARY_FILE
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("best") else None
