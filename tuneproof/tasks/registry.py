"""The tasks this version knows: one line per task. Only tuneproof's own modules are ever imported."""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from tuneproof.errors import Problem, ProtocolError
from tuneproof.tasks.spec import TaskSpec

if TYPE_CHECKING:
    from tuneproof.tasks.base import Task, TaskEnv

# name -> "module:class". Adding a task is a new module under tasks/ plus one line here.
TASKS: dict[str, str] = {
    "classification": "tuneproof.tasks.classification:ClassificationTask",
    "token_classification": "tuneproof.tasks.token_classification:TokenClassificationTask",
    "regression": "tuneproof.tasks.regression:RegressionTask",
    "multilabel": "tuneproof.tasks.multilabel:MultilabelTask",
    "sft": "tuneproof.tasks.sft:SftTask",
    "dapt": "tuneproof.tasks.dapt:DaptTask",
    "seq2seq": "tuneproof.tasks.seq2seq:Seq2SeqTask",
    "image_classification": "tuneproof.tasks.image_classification:ImageClassificationTask",
}


def task_class(name: str) -> type[Task]:
    if name not in TASKS:
        raise ProtocolError([Problem("task", f"task {name!r} is not available in this version")])
    module, _, cls = TASKS[name].partition(":")
    task_cls: type[Task] = getattr(import_module(module), cls)
    return task_cls


def task_spec(name: str) -> TaskSpec:
    return task_class(name).spec


def task_specs() -> dict[str, TaskSpec]:
    """Every registered task's metadata, by name: what the protocol schema validates against."""
    return {name: task_spec(name) for name in TASKS}


def get_task(protocol: Any, env: TaskEnv | None = None) -> Task:
    """The task object for ``protocol.task``, with what it needs beyond the protocol."""
    return task_class(protocol.task)(protocol, env)
