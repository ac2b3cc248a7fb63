"""The server's model: the seeded starting weights of round 1, and the packaged global model.

The server builds the protocol's model from the base model (which is not site data) with the same
seed as every site, so the weights that do not travel (with LoRA, the frozen base) are identical
everywhere and only the trainable ones need to be sent.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tuneproof.context import RunContext, build_context
from tuneproof.evidence import ModelInfo
from tuneproof.export.package import package_model
from tuneproof.federated.checkpoints import Arrays
from tuneproof.federated.site import load_trainable, trainable_arrays
from tuneproof.protocol import LoadedProtocol
from tuneproof.train.fit import apply_method
from tuneproof.train.model_source import base_model_record


def server_model(loaded: LoadedProtocol) -> tuple[RunContext, nn.Module]:
    ctx = build_context(loaded, loaded.base_dir, None)
    torch.manual_seed(ctx.protocol.seed)
    return ctx, apply_method(ctx.task.build_model(ctx.ref), ctx.protocol, ctx.task)


def initial_arrays(loaded: LoadedProtocol) -> Arrays:
    return trainable_arrays(server_model(loaded)[1])


def package_global(federation: Any, arrays: Arrays) -> None:
    """``model/`` in the server's run folder, as ``tuneproof predict`` and ``serve`` read it."""
    ctx, model = server_model(federation.loaded)
    load_trainable(model, arrays)
    deployable = bool(federation.state.get("deployable"))
    info = ModelInfo(
        task=ctx.protocol.task,
        labels=list(ctx.task.labels),
        max_length=ctx.protocol.model.max_length,
        precision=ctx.precision,
        method=ctx.protocol.train.method,
        base_model=base_model_record(ctx.ref),
        deployable=deployable,
    )
    package_model(model, ctx.tokenizer, info, federation.run_dir / "model")
