"""The run context: what every entry point that trains or prepares data builds first, built once.

``tuneproof run``, the search leader and `tuneproof search-worker` all start from
:func:`build_context`, so the set-up (task, threads, precision, model reference, tokenizer, caches)
and the data stage are written once and run the same way everywhere.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tuneproof.data.prepare import FrameHook, PreparedData
from tuneproof.protocol import LoadedProtocol
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks.base import Task, TaskEnv, TokenLengths
from tuneproof.tasks.registry import get_task, task_class
from tuneproof.train.features import cached_features, tokenizer_fingerprint
from tuneproof.train.fit import set_threads
from tuneproof.train.model_source import ModelRef, resolve_model
from tuneproof.train.precision import choose_precision


@dataclass
class RunContext:
    loaded: LoadedProtocol
    protocol: Protocol
    base_dir: Path  # the folder the protocol's relative paths are resolved against
    task: Task
    ref: ModelRef
    tokenizer: Any  # a transformers tokenizer (no common base class to name)
    precision: str  # bf16 | fp32, as chosen for this machine
    precision_reason: str
    threads: int
    cache_dir: Path | None

    def prepare(self) -> PreparedData:
        """The data stage for this protocol: read, validate, clean, de-duplicate, split."""
        return self.task.prepare_data(
            self.base_dir,
            # A task whose text is structured (chat messages as JSON) counts its own tokens.
            token_lengths=self.task.token_lengths(self.tokenizer)
            or token_lengths_fn(self.tokenizer, self.cache_dir),
            text_hook=text_hook(self.protocol),
        )


def build_context(loaded: LoadedProtocol, base_dir: Path, cache_dir: Path | None) -> RunContext:
    quiet_libraries()
    protocol = loaded.protocol
    threads = set_threads(protocol)
    precision, why = choose_precision(protocol.train.precision)
    ref = resolve_model(protocol.model, base_dir)
    tokenizer = task_class(protocol.task).load_preprocessor(
        protocol, ref
    )  # a tokenizer, or an image processor
    task = get_task(protocol, TaskEnv(tokenizer, ref, precision, cache_dir))
    task.use_base_dir(base_dir)
    return RunContext(loaded, protocol, base_dir, task, ref, tokenizer, precision, why, threads, cache_dir)


def quiet_libraries() -> None:
    """tuneproof prints its own progress; the libraries' bars and load reports would drown it."""
    import datasets
    import transformers

    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()


def token_lengths_fn(tokenizer: Any, cache: Path | None) -> TokenLengths:
    def lengths(texts: list[str]) -> list[int]:
        digest = hashlib.sha256("\x1e".join(texts).encode()).hexdigest()

        def encode(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
            return {"n": [len(x) for x in tokenizer(batch["text"], add_special_tokens=True)["input_ids"]]}

        rows = cached_features(
            {"text": texts}, encode, ["lengths", tokenizer_fingerprint(tokenizer), digest], cache
        )
        return [r["n"] for r in rows]

    return lengths


def text_hook(protocol: Protocol) -> FrameHook | None:
    """The PII step, where the protocol asks for one: it rewrites texts before de-duplication."""
    if protocol.pii is None:
        return None
    from tuneproof.data.pii_step import pii_frame_hook

    return pii_frame_hook(protocol.pii, protocol.data.text_column)
