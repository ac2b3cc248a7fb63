"""Canaries: planting is seeded and visible only to training, exposure is near chance for a model
that never saw them and near its maximum for one that memorised them, and a dapt run reports it."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from generative_helpers import domain_lines, write_lines, write_tiny_llama
from pydantic import ValidationError

from tuneproof.privacy.canary import exposure, make_canaries, plant, sequence_nll
from tuneproof.privacy.spec import CanarySpec

# Symbols and prefix from the tiny tokenizer's word list, so no canary token is <unk>.
ALPHABET = ["red", "rose", "snow", "white", "night", "black", "sun", "sky", "grass", "green"]
SPEC = CanarySpec(count=3, repeats=2, prefix="tell me the name", alphabet=ALPHABET, length=5, candidates=300)


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama-canary"))


def _load(path: Path) -> tuple[Any, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)


def test_planting_is_seeded_and_adds_each_canary_repeats_times() -> None:
    train = pd.DataFrame(
        {"row_id": [f"d:{i}" for i in range(10)], "text": ["we propose"] * 10, "label": None}
    )
    a, canaries = plant(train, SPEC, seed=3)
    b, _ = plant(train, SPEC, seed=3)
    pd.testing.assert_frame_equal(a, b)
    assert len(a) == 10 + 3 * 2 and list(a.columns) == ["row_id", "text", "label"]
    assert [c.row_ids for c in canaries] == [(f"canary-{i}-0", f"canary-{i}-1") for i in range(3)]
    for c in canaries:
        assert a.loc[a["row_id"].isin(c.row_ids), "text"].tolist() == [c.text, c.text]
        assert c.text.startswith("tell me the name ") and len(c.text.split()) == 4 + 5
    assert len({c.text for c in canaries}) == 3
    assert make_canaries(SPEC, 3) != make_canaries(SPEC, 4)
    assert set(a["row_id"]) >= set(train["row_id"])  # the real rows are all kept


def test_the_spec_refuses_too_few_possible_secrets() -> None:
    with pytest.raises(ValidationError, match="too few distinct secrets"):
        CanarySpec(alphabet=["a", "b"], length=3, candidates=100)
    with pytest.raises(ValidationError, match="distinct"):
        CanarySpec(alphabet=["a", "a", "b"])


def test_sequence_nll_matches_the_model_loss(tiny_llama: Path) -> None:
    model, tok = _load(tiny_llama)
    text = "tell me the name red rose snow"
    ids = torch.tensor([tok(text, add_special_tokens=False)["input_ids"]])
    with torch.no_grad():
        mean = model(input_ids=ids, labels=ids).loss.item()
    assert sequence_nll(model, tok, [text, "hello"])[0] == pytest.approx(mean * (ids.shape[1] - 1), rel=1e-5)


def test_exposure_is_near_chance_unseen_and_near_the_maximum_once_memorised(tiny_llama: Path) -> None:
    model, tok = _load(tiny_llama)
    _, canaries = plant(pd.DataFrame({"row_id": ["x"], "text": ["we"]}), SPEC, seed=11)
    fresh = exposure(model, tok, canaries, SPEC, seed=11)
    top = math.log2(SPEC.candidates + 1)
    assert fresh["details"]["max_exposure"] == pytest.approx(top)
    # A random rank among 301 has expected exposure of about 1.4 bits; 3 canaries stay well under 5.
    assert fresh["canary_exposure"] < 5.0, fresh

    torch.manual_seed(0)
    texts = [c.text for c in canaries] * 4 + domain_lines(24, seed=2)
    enc = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    model.train()
    for step in range(60):
        batch = [enc[i] for i in np.random.default_rng(step).choice(len(enc), 8, replace=False)]
        width = max(len(x) for x in batch)
        ids = torch.tensor([x + [tok.pad_token_id] * (width - len(x)) for x in batch])
        labels = ids.masked_fill(ids == tok.pad_token_id, -100)
        opt.zero_grad()
        model(input_ids=ids, labels=labels).loss.backward()
        opt.step()
    memorised = exposure(model, tok, canaries, SPEC, seed=11)
    assert memorised["canary_exposure"] > top - 1.0, memorised
    assert all(c["rank"] <= 2 for c in memorised["details"]["canaries"])


@pytest.mark.integration
def test_a_dapt_run_reports_canary_exposure_and_gates_on_it(tmp_path: Path, tiny_llama: Path) -> None:
    from tuneproof.runner import run

    data = write_lines(tmp_path / "domain.txt", domain_lines(120, seed=4))
    alphabet = json.dumps(ALPHABET)
    proto = tmp_path / "p.yaml"
    proto.write_text(f"""
name: canary-tiny
task: dapt
model: {{source: {tiny_llama}, max_length: 24}}
data: {{files: [{data}]}}
split: {{train: 0.6, validation: 0.0, test: 0.4}}
train: {{method: full, epochs: 12, batch_size: 8, learning_rate: 0.005, scheduler: constant, precision: fp32}}
evaluate: {{bootstrap_samples: 200}}
privacy:
  audit:
    max_rows: 100
    bootstrap_samples: 200
    canaries:
      {{count: 3, repeats: 6, prefix: tell me the name, alphabet: {alphabet}, length: 5, candidates: 300}}
gates:
  - {{metric: canary_exposure, max: 3}}
""")
    outcome = run(proto, output_dir=tmp_path / "runs")
    metrics = json.loads((outcome.run_dir / "metrics.json").read_text())
    assert metrics["model"]["canary_exposure"] > 6.0, metrics["privacy"]
    details = metrics["privacy"]["canaries"]
    assert details["repeats"] == 6 and len(details["canaries"]) == 3 and details["candidates"] == 300
    assert {"value", "low", "high"} <= set(metrics["model"]["membership_auc"])
    verdict = json.loads((outcome.run_dir / "gates.json").read_text())["verdicts"][0]
    assert verdict["metric"] == "canary_exposure" and not verdict["passed"]
    # The data folder holds the split as prepared: the canaries were added to training only.
    texts = " ".join(pd.read_parquet(outcome.run_dir / "data" / "train.parquet")["text"])
    assert "tell me the name" not in texts
    page = (outcome.run_dir / "report.html").read_text()
    assert "Privacy: DP training and memorisation audit" in page and "exposure (bits)" in page
    assert details["canaries"][0]["canary"] in page
