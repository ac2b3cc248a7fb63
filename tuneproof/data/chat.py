"""Validate chat conversations the way a careful fine-tuning service does, and store them canonically.

Accepted inputs, per row:

- ``messages``: a list of ``{"role", "content"}`` (OpenAI style; optional ``weight`` 0/1 on assistant
  turns says whether that turn is trained on, optional ``name`` is kept out of the prompt);
- a prompt string (prompt/completion data from any table: CSV, JSONL, Parquet...), which becomes one
  user turn, after the protocol's ``sft.system_prompt`` when one is set.

Every problem of a row is reported, with the message index, so the user fixes a file once. A valid
conversation is stored as canonical JSON text in the prepared ``text`` column (the data stage works
on strings: cleaning, de-duplication and leakage checks all apply to it unchanged).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

ROLES = ("system", "user", "assistant")
_KEYS = {"role", "content", "weight", "name"}

RowCheck = Callable[[dict[str, Any]], tuple[str | None, Any, list[tuple[int | None, str]]]]


def _as_messages(value: Any) -> tuple[list[Any] | None, str | None]:
    if isinstance(value, str):
        stripped = value.strip()
        if stripped.startswith("["):  # a JSON-encoded list, as CSV files hold it
            try:
                value = json.loads(stripped)
            except ValueError as exc:
                return None, f"messages look like JSON but do not parse: {exc}"
        else:
            return None, None
    if hasattr(value, "tolist") and not isinstance(value, list):  # numpy arrays from Parquet
        value = value.tolist()
    if not isinstance(value, list):
        return None, f"messages must be a list of {{role, content}} objects, got {type(value).__name__}"
    return value, None


def check_messages(messages: list[Any], final: str) -> tuple[list[dict[str, Any]], list[str]]:
    """Canonical messages and every problem found. ``final``: which role must end the conversation
    (``assistant`` for chat data; ``user`` when a separate target column supplies the answer)."""
    problems: list[str] = []
    out: list[dict[str, Any]] = []
    if not messages:
        return [], ["the conversation has no messages"]
    for i, msg in enumerate(messages):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            problems.append(f"{where}: must be an object with role and content, got {type(msg).__name__}")
            continue
        unknown = sorted(set(msg) - _KEYS)
        if unknown:
            problems.append(
                f"{where}: unsupported key(s) {', '.join(map(repr, unknown))} (tool calls are not supported)"
            )
        role, content = msg.get("role"), msg.get("content")
        if role not in ROLES:
            problems.append(f"{where}: role {role!r} is not one of {', '.join(ROLES)}")
        if not isinstance(content, str):
            problems.append(f"{where}: content must be a string, got {type(content).__name__}")
        elif not content.strip():
            problems.append(f"{where}: empty {role} turn" if role in ROLES else f"{where}: empty turn")
        weight = msg.get("weight", 1)
        if "weight" in msg and (role != "assistant" or weight not in (0, 1) or isinstance(weight, bool)):
            problems.append(f"{where}: weight must be 0 or 1 and only on assistant turns")
        canonical = {"role": role, "content": content}
        if role == "assistant" and weight == 0:
            canonical["weight"] = 0
        out.append(canonical)
    if problems:
        return out, problems
    roles = [m["role"] for m in out]
    if "system" in roles[1:]:
        problems.append(f"messages[{roles.index('system', 1)}]: a system message may only come first")
    turns = roles[1:] if roles[0] == "system" else roles
    first = 1 if roles[0] == "system" else 0
    for j, role in enumerate(turns):
        expected = "a user" if j % 2 == 0 else "an assistant"
        if role != "system" and role != expected.split()[1]:
            problems.append(
                f"messages[{first + j}]: expected {expected} turn, got {role} "
                "(turns must alternate user, assistant, ... starting with user)"
            )
            break
    if not turns:
        problems.append("the conversation has only a system message")
    elif final == "assistant":
        if "assistant" not in turns:
            problems.append("no assistant turn: there is nothing to train on")
        elif not any(m["role"] == "assistant" and m.get("weight", 1) for m in out):
            problems.append("every assistant turn has weight 0: there is nothing to train on")
        elif turns[-1] != "assistant":
            problems.append("the conversation must end with an assistant turn")
    elif turns[-1] != "user":
        problems.append("with a target column the conversation must end with a user turn")
    return out, problems


def to_text(messages: list[dict[str, Any]]) -> str:
    return json.dumps(messages, ensure_ascii=False, separators=(",", ":"))


def from_text(text: str) -> list[dict[str, Any]]:
    messages = json.loads(text)
    assert isinstance(messages, list)
    return messages


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def conversation_row_check(
    text_column: str, target_column: str | None, system_prompt: str | None = None
) -> RowCheck:
    """The data stage's whole-row check for chat and prompt/completion data.

    ``system_prompt`` opens every conversation that has no system message of its own (a row's own
    instructions win). Returns (the conversation as canonical text, ending with the answer; the final
    answer; problems as [(line or None, message)]).
    """

    def check(raw: dict[str, Any]) -> tuple[str | None, Any, list[tuple[int | None, str]]]:
        value = raw.get(text_column)
        errors: list[str] = []
        if _missing(value) or (isinstance(value, str) and not value.strip()):
            return None, None, [(None, f"empty {text_column!r}")]
        messages, err = _as_messages(value)
        if err is not None:
            return None, None, [(None, err)]
        if messages is None:  # a plain prompt string
            if target_column is None:
                return (
                    None,
                    None,
                    [
                        (
                            None,
                            f"{text_column!r} is a string; chat data needs a list of messages "
                            "(or name the completion column in data.label_column)",
                        )
                    ],
                )
            messages = [{"role": "user", "content": value}]
        if system_prompt is not None and not (
            messages and isinstance(messages[0], dict) and messages[0].get("role") == "system"
        ):
            messages = [{"role": "system", "content": system_prompt}, *messages]
        canonical, errors = check_messages(messages, "user" if target_column is not None else "assistant")
        target = None
        if target_column is not None:
            target = raw.get(target_column)
            if isinstance(target, list) and len(target) == 1:
                target = target[0]  # a one-element list of references (the evals format allows lists)
            if not isinstance(target, str):
                errors.append(f"{target_column!r} must be a string, got {type(target).__name__}")
            elif not target.strip():
                errors.append(f"empty {target_column!r}")
        if errors:
            return None, None, [(None, e) for e in errors]
        if target is not None:
            # The stored conversation is the whole example, answer included: token lengths, duplicate
            # and leakage checks must all see what the model is trained on.
            canonical.append({"role": "assistant", "content": target})
        else:
            target = next(m["content"] for m in reversed(canonical) if m["role"] == "assistant")
        return to_text(canonical), target, []

    return check


__all__ = ["ROLES", "check_messages", "conversation_row_check", "from_text", "to_text"]
