"""Try a run's model on a typed text (or, for an sft model, a chat), through the code `predict` and
`serve` use, with the base model's answer beside it for the generative tasks.

A pretrained encoder has no trained head for a run's labels, so for the encoder tasks there is no
base-model answer to show; the run's report compares that model with its baselines. A generative
run starts from a model that can already answer: the base model is the one the run's protocol named
(resolved from the protocol's folder, as the run did), decoded greedily with the run's tokenizer and
``generation.max_new_tokens``, as the run's ``base_model`` baseline was scored. When the base model's
files no longer hash to what the run recorded, the answer is shown with that warning.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

from tuneproof.errors import DataValidationError, Problem

_lock = threading.Lock()
_cache: OrderedDict[tuple[Path, str], Any] = OrderedDict()
_CACHED = 3  # models kept loaded: two runs being compared and a base model
GENERATIVE = frozenset({"sft", "seq2seq", "dapt"})


def _cached(key: tuple[Path, str], load: Any) -> Any:
    with _lock:
        if key in _cache:
            _cache.move_to_end(key)
            return _cache[key]
    value = load()
    with _lock:
        _cache[key] = value
        while len(_cache) > _CACHED:
            _cache.popitem(last=False)
    return value


def predictor_for(run_dir: Path) -> Any:
    from tuneproof.serve.predict import Predictor

    return _cached((run_dir, "model"), lambda: Predictor.load(run_dir))


def _base_for(run_dir: Path, predictor: Any) -> tuple[Any, str | None]:
    """The run's base model (loaded once), and a warning when it is not the one the run recorded."""

    def load() -> tuple[Any, str | None]:
        from tuneproof.train.model_source import base_model_record, resolve_model

        manifest = json.loads((run_dir / "manifest.json").read_text(encoding="utf-8"))
        folder = Path(manifest.get("protocol_dir") or run_dir)
        ref = resolve_model(predictor.task.protocol.model, folder)
        recorded = (manifest.get("base_model") or {}).get("sha256")
        now = base_model_record(ref).sha256
        warning = (
            None
            if recorded is None or recorded == now
            else "the base model's files changed since the run (SHA-256 differs from the manifest)"
        )
        model = predictor.task.load_model(ref)
        model.eval()
        return model, warning

    result: tuple[Any, str | None] = _cached((run_dir, "base"), load)
    return result


def _chat_answer(model: Any, predictor: Any, messages: list[dict[str, str]]) -> str:
    from tuneproof.serve.chat import Generation, generate, prompt_ids

    protocol = predictor.task.protocol
    ids = prompt_ids(predictor.tokenizer, messages, protocol.model.max_length)
    if ids is None:
        raise DataValidationError(
            [
                Problem(
                    "messages",
                    f"the conversation is longer than model.max_length ({protocol.model.max_length} tokens)",
                )
            ],
            "try",
        )
    gen = Generation(ids, protocol.generation.max_new_tokens, temperature=0.0, top_p=None, seed=None)
    generate(model, predictor.tokenizer, gen)
    return str(predictor.tokenizer.decode(gen.new_ids, skip_special_tokens=True).strip())


def _with_system(predictor: Any, messages: list[dict[str, str]]) -> list[dict[str, str]]:
    # The protocol's system prompt opened every training conversation without one of its own.
    system = predictor.task.protocol.sft.system_prompt
    if system and not any(m["role"] == "system" for m in messages):
        return [{"role": "system", "content": system}, *messages]
    return messages


def check_messages(messages: list[dict[str, str]]) -> None:
    problems = [
        Problem(f"messages[{i}].role", f"{m.get('role')!r} is not system, user or assistant")
        for i, m in enumerate(messages)
        if m.get("role") not in ("system", "user", "assistant")
    ]
    if not messages or messages[-1].get("role") != "user":
        problems.append(Problem("messages", "the conversation must end with a user turn"))
    if problems:
        raise DataValidationError(problems, "try")


def try_chat(run_dir: Path, messages: list[dict[str, str]], with_base: bool = True) -> dict[str, Any]:
    """The sft model's next assistant turn for ``messages``, and the base model's beside it."""
    check_messages(messages)
    predictor = predictor_for(run_dir)
    if predictor.info.task != "sft":
        raise DataValidationError(
            [Problem("messages", f"a chat needs an sft run; this is {predictor.info.task}")], "try"
        )
    conversation = _with_system(predictor, messages)
    out: dict[str, Any] = {"task": "sft", "deployable": predictor.info.deployable, "base": None}
    with _lock:  # one generation at a time: the UI is one person's workbench, not a server
        out["model"] = {"generation": _chat_answer(predictor.model, predictor, conversation)}
    if with_base:
        base, warning = _base_for(run_dir, predictor)
        with _lock:
            out["base"] = {"generation": _chat_answer(base, predictor, conversation)}
        out["base_warning"] = warning
    return out


def try_text(run_dir: Path, text: str) -> dict[str, Any]:
    """The model's answer to one text, with the run's deployability (and the base model's answer
    for the generative tasks)."""
    predictor = predictor_for(run_dir)
    task = predictor.info.task
    if task == "sft":
        return try_chat(run_dir, [{"role": "user", "content": text}])
    with _lock:
        answer = predictor.predict([text])[0]
    out: dict[str, Any] = {
        "task": task,
        "model": answer,
        "deployable": predictor.info.deployable,
        "base": None,
    }
    if task in GENERATIVE:
        import torch

        base, warning = _base_for(run_dir, predictor)
        with _lock, torch.inference_mode():
            swapped = predictor.model
            predictor.model = base  # the same features, decoding and formatting, on the base weights
            try:
                out["base"] = predictor.predict([text])[0]
            finally:
                predictor.model = swapped
        out["base_warning"] = warning
    return out
