"""OpenAI-compatible chat completions for a packaged ``sft`` model.

The conversation is rendered with the model's own chat template (as sft training and ``predict`` do)
and continued with ``transformers``' ``generate``: greedy unless a temperature above 0 is asked for,
which matches how the run evaluated the model. Streaming uses transformers' text streamer, which
holds back partial words. A stop flag is checked between tokens, so a client that disconnects or
times out stops the generation at the next token instead of leaving it running.

Completions run one at a time on the model worker (no batching across chat requests).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass
class Generation:
    prompt_ids: list[int]
    max_new_tokens: int
    temperature: float
    top_p: float | None
    seed: int | None
    stop: threading.Event = field(default_factory=threading.Event)
    started: threading.Event = field(default_factory=threading.Event)
    new_ids: list[int] = field(default_factory=list)
    finish_reason: str = "stop"


def prompt_ids(tokenizer: Any, messages: list[dict[str, str]], max_prompt_tokens: int) -> list[int] | None:
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return ids if len(ids) <= max_prompt_tokens else None


def _stopping(gen: Generation) -> Any:
    from transformers import StoppingCriteria, StoppingCriteriaList

    class StopFlag(StoppingCriteria):
        def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **kwargs: Any) -> torch.Tensor:
            done = gen.stop.is_set()
            return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([StopFlag()])


def generate(model: Any, tokenizer: Any, gen: Generation, streamer: Any = None) -> Generation:
    """Runs on the model worker thread; fills ``gen.new_ids`` and ``gen.finish_reason``."""
    from transformers import GenerationConfig

    gen.started.set()
    if gen.stop.is_set():
        gen.finish_reason = "cancelled"
        if streamer is not None:
            streamer.end()
        return gen
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    sample = gen.temperature > 0
    cfg = GenerationConfig(
        max_new_tokens=gen.max_new_tokens,
        do_sample=sample,
        temperature=gen.temperature if sample else None,
        top_p=gen.top_p if sample else None,
        top_k=None,
        eos_token_id=eos,
        pad_token_id=pad,
    )
    if gen.seed is not None:
        torch.manual_seed(gen.seed)  # the worker is the only thread that samples
    ids = torch.tensor([gen.prompt_ids], dtype=torch.long, device=next(model.parameters()).device)
    with torch.inference_mode():
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            generation_config=cfg,
            stopping_criteria=_stopping(gen),
            streamer=streamer,
        )
    new = out[0, ids.shape[1] :].tolist()
    if eos is not None and eos in new:
        new = new[: new.index(eos)]
        gen.finish_reason = "stop"
    elif gen.stop.is_set():
        gen.finish_reason = "cancelled"
    else:
        gen.finish_reason = "length" if len(new) >= gen.max_new_tokens else "stop"
    gen.new_ids = new
    return gen


def async_streamer(tokenizer: Any) -> Any:
    from transformers.generation.streamers import AsyncTextIteratorStreamer

    return AsyncTextIteratorStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)


async def next_text(streamer: Any) -> str | None:
    try:
        return str(await streamer.__anext__())
    except (StopAsyncIteration, asyncio.CancelledError):
        return None
