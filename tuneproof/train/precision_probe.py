"""``precision: auto`` for image models: time a few real training steps, then train with the fastest.

The CPU-flag rule (``precision.choose_precision``) was measured on transformers, where bf16 autocast
is about 2x faster. A convnet is another matter: on an Intel Xeon with AMX and avx512_bf16,
tuneproof's bf16 default trained EfficientNet-Lite0 at 0.47x the images/s of an fp32 Trainer recipe
(benchmarks/image_recipe.py), and whether channels-last helps depends on the model, the image size
and the oneDNN build. So for a task that asks for it (``TaskSpec.precision_probe``), the run times
forward + backward + optimizer step of copies of the actual model on one actual training batch in
each candidate (fp32 or bf16 autocast, x NCHW or channels-last), interleaved round by round so a
burst of load on a shared machine hits every candidate alike, and trains with the fastest.

Trade-offs and failure modes:

* Results depend on a timing. To keep a noisy machine from flipping a run between settings, the
  CPU-flag default is kept unless another candidate is faster by more than ``MARGIN``.
* The probe costs up to ``(rounds + 1) x steps`` steps per candidate (a few seconds for
  EfficientNet-Lite0 at 32 px in fp32); it stops once ``MAX_SECONDS`` are spent, after at least one
  timed round, and stops timing a candidate once it is ``DROP`` x slower than the fastest. The
  warm-up round is untimed and unbounded: a first bf16 step where oneDNN builds its kernels can
  take tens of seconds.
* A resumed run reuses the first part's choice (``precision_probe.json`` beside the checkpoints),
  so it is bit-identical to an uninterrupted run; timing it again could choose differently.
* Only on CPU and in one process: on CUDA, or with several processes (each would time on its own
  and could choose differently), the CPU-flag rule stands.
"""

from __future__ import annotations

import copy
import json
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tuneproof.protocol.schema import TrainSpec
from tuneproof.train.loop import Batch, LossFn, build_optimizer, set_memory_format, to_memory_format

MARGIN = 0.05  # another candidate must cut the step time by more than this to replace the default
MAX_SECONDS = 30.0  # the probe stops after the round that passes this
ROUNDS = 3  # timed rounds, after one warm-up round (oneDNN builds its kernels on first use)
STEPS = 2  # training steps per candidate per round
DROP = 1.5  # after a timed round, candidates slower than this many times the fastest are not timed again
FILE = "precision_probe.json"


@dataclass(frozen=True)
class Candidate:
    precision: str  # fp32 | bf16 (autocast)
    channels_last: bool

    @property
    def label(self) -> str:
        return f"{self.precision}-{'channels_last' if self.channels_last else 'nchw'}"


@dataclass(frozen=True)
class ProbeChoice:
    """What the probe measured and chose; written to ``training/summary.json`` as it stands."""

    precision: str
    channels_last: bool
    default: str  # the candidate the CPU-flag rule gives (label)
    chosen: str  # label
    step_seconds: dict[str, float]  # median seconds per training step, by candidate label
    relative_to_default: dict[str, float]  # median over rounds of step time / the default's, paired
    rounds: int
    steps_per_round: int
    batch_size: int
    margin: float
    reason: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> ProbeChoice:
        return cls(**raw)


def candidates_for(default_precision: str) -> list[Candidate]:
    """Both layouts, in fp32 and, where the CPU-flag rule found native bf16, bf16 (emulated bf16
    is slow: not worth timing)."""
    precisions = ["fp32", "bf16"] if default_precision == "bf16" else ["fp32"]
    return [Candidate(p, cl) for p in precisions for cl in (False, True)]


def decide(
    seconds: Mapping[Candidate, Sequence[float]],
    default: Candidate,
    batch_size: int,
    steps_per_round: int,
    margin: float = MARGIN,
) -> ProbeChoice:
    """The fastest candidate, or ``default`` unless another beats it clearly.

    Rounds are interleaved, so round ``r`` of every candidate ran under about the same load: each
    candidate is compared with the default round by round (paired). A candidate replaces the
    default only if its median paired step-time ratio is below ``1 - margin`` *and* it was faster
    in every round both were timed in; among those, the lowest median ratio wins.
    """
    if default not in seconds or not seconds[default]:
        raise ValueError(f"the default candidate {default.label} was not timed")
    base = list(seconds[default])
    median = {c: statistics.median(ts) for c, ts in seconds.items() if ts}
    paired = {c: [t / b for t, b in zip(seconds[c], base, strict=False)] for c in median}
    ratio = {c: statistics.median(rs) for c, rs in paired.items()}
    clear = [c for c in ratio if c != default and ratio[c] < 1 - margin and max(paired[c]) < 1]
    chosen = min(clear, key=lambda c: ratio[c]) if clear else default
    fastest = min(ratio, key=lambda c: (ratio[c], c != default))
    relative = {c.label: ratio[c] for c in ratio}
    rounds = max(len(ts) for ts in seconds.values())
    if chosen == default:
        why = (
            f"kept the CPU-flag default {default.label}: no candidate was more than {margin:.0%} "
            f"faster in the median and faster in every round (fastest {fastest.label}, "
            f"{relative[fastest.label]:.2f}x its step time)"
        )
    else:
        why = (
            f"{chosen.label} took {relative[chosen.label]:.2f}x the step time "
            f"of the CPU-flag default {default.label}"
        )
    reason = (
        f"measured on up to {rounds} rounds of {steps_per_round} training steps (batch {batch_size}) "
        f"of the run's model: {why}"
    )
    return ProbeChoice(
        precision=chosen.precision,
        channels_last=chosen.channels_last,
        default=default.label,
        chosen=chosen.label,
        step_seconds={c.label: median[c] for c in median},
        relative_to_default=relative,
        rounds=rounds,
        steps_per_round=steps_per_round,
        batch_size=batch_size,
        margin=margin,
        reason=reason,
    )


def time_candidates(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    spec: TrainSpec,
    candidates: Sequence[Candidate],
    rounds: int = ROUNDS,
    steps: int = STEPS,
    max_seconds: float = MAX_SECONDS,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[Candidate, list[float]]:
    """Seconds per training step of each candidate, one entry per timed round.

    Trains deep copies (one per layout, with the run's optimizer), so ``model``, its batch-norm
    statistics and the torch RNG (dropout) are as they were: the run that follows trains exactly as
    it would have without the probe.
    """
    rng = torch.get_rng_state()
    copies: dict[bool, tuple[nn.Module, torch.optim.Optimizer]] = {}
    for cl in sorted({c.channels_last for c in candidates}):
        m = copy.deepcopy(model)
        if cl:
            m = set_memory_format(m, True)
        m.train()
        copies[cl] = (m, build_optimizer(m, spec))
    layouts = {cl: to_memory_format(batch, cl) for cl in copies}
    times: dict[Candidate, list[float]] = {c: [] for c in candidates}
    live = list(candidates)
    started = clock()
    try:
        for r in range(rounds + 1):  # round 0 warms up and is dropped
            for c in live:
                m, opt = copies[c.channels_last]
                b = layouts[c.channels_last]
                t = clock()
                for _ in range(steps):
                    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=c.precision == "bf16"):
                        loss, count = loss_fn(m, b)
                    (loss / max(count, 1)).backward()
                    opt.step()
                    opt.zero_grad(set_to_none=True)
                if r:
                    times[c].append((clock() - t) / steps)
            if r and clock() - started > max_seconds:
                break
            if r:
                # A candidate at more than DROP x the fastest cannot come within the margin: stop
                # timing it (emulated or badly supported bf16 steps can take 20x longer).
                best = min(statistics.median(times[c]) for c in live)
                live = [c for c in live if statistics.median(times[c]) <= DROP * best]
    finally:
        torch.set_rng_state(rng)
    return times


def probe(
    model: nn.Module,
    batch: Batch,
    loss_fn: LossFn,
    spec: TrainSpec,
    default_precision: str,
    checkpoint_dir: Path,
    resume: bool,
) -> ProbeChoice:
    """The choice for this run: the one a resumed run made before, else measured now (and kept
    beside the checkpoints for a later resume)."""
    path = checkpoint_dir / FILE
    if resume and path.is_file():
        return ProbeChoice.from_json(json.loads(path.read_text()))
    candidates = candidates_for(default_precision)
    default = Candidate(default_precision, False)
    seconds = time_candidates(model, batch, loss_fn, spec, candidates)
    choice = decide(seconds, default, int(batch["_count"]), STEPS)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(choice.to_json(), indent=1))
    return choice
