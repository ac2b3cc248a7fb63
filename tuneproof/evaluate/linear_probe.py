"""The linear probe: logistic regression on the frozen pretrained backbone's features.

The image counterpart of TF-IDF + logistic regression: what the pretrained features already give
without any fine-tuning. The features are what the model's classification head receives (taken
with a hook on its input), so the probe sees exactly the representation the fine-tuned head starts
from, for any architecture that names its head ``classifier`` (ViT, ConvNeXt, ResNet, EfficientNet).
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler
from torch import nn

from tuneproof.evaluate.baselines import majority_probs

# Fixed, like the TF-IDF baseline's C: a tuned probe would need a search on validation data, and a
# fixed moderate regularisation on standardised features is a strong, cheap default.
PROBE_C = 0.5


def head_inputs(model: nn.Module, batches: Iterable[torch.Tensor]) -> np.ndarray:
    """The classification head's input for every image, in order ([n, d] float32)."""
    head = getattr(model, "classifier", None)
    if not isinstance(head, nn.Module):
        raise ValueError(f"{type(model).__name__} has no `classifier` head to probe beneath")
    seen: list[torch.Tensor] = []

    def grab(_module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        seen.append(args[0].detach().float().flatten(1).cpu())

    handle = head.register_forward_pre_hook(grab)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            for pixel_values in batches:
                model(pixel_values=pixel_values.to(device))
    finally:
        handle.remove()
        model.train(was_training)
    return torch.cat(seen).numpy() if seen else np.zeros((0, 0), dtype=np.float32)


def linear_probe_probs(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, k: int, seed: int
) -> np.ndarray:
    """Probabilities [n_test, k]; column j is label id j even where j never occurs in training."""
    y = np.asarray(y_train, dtype=np.int64)
    classes = np.unique(y)
    if classes.size < 2:
        return majority_probs(y, len(x_test), k)
    scaler = StandardScaler().fit(x_train)
    clf = LogisticRegression(C=PROBE_C, max_iter=3000, random_state=seed)
    clf.fit(scaler.transform(x_train), y)
    out = np.zeros((len(x_test), k), dtype=np.float64)
    if len(x_test):
        out[:, clf.classes_] = clf.predict_proba(scaler.transform(x_test))
    return out
