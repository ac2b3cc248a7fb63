"""Tiny causal and seq2seq models with word-level tokenizers, built in code for the generative tasks."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

SPECIAL = ["<pad>", "<unk>", "<|im_start|>", "<|im_end|>"]
ROLE_WORDS = ["system", "user", "assistant"]
WORDS = [
    "hello",
    "there",
    "hi",
    "friend",
    "what",
    "is",
    "the",
    "colour",
    "of",
    "sky",
    "grass",
    "sun",
    "blue",
    "green",
    "yellow",
    "name",
    "a",
    "an",
    "answer",
    "be",
    "brief",
    "please",
    "thanks",
    "ok",
    "red",
    "rose",
    "snow",
    "white",
    "night",
    "black",
    "tell",
    "me",
    "title",
    "for",
    "paper",
    "on",
    "cats",
    "dogs",
    "birds",
    "fish",
    "study",
    "of",
    "new",
    "method",
    "results",
    "show",
    "we",
    "propose",
    "and",
    "in",
]
# ChatML without a default system prompt; each turn ends with <|im_end|>.
CHAT_TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def vocab() -> list[str]:
    return [*SPECIAL, *ROLE_WORDS, *dict.fromkeys(WORDS)]


def chat_tokenizer(eos: str = "<|im_end|>") -> Any:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    words = vocab()
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces when decoding
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>", eos_token=eos, bos_token="<|im_start|>"
    )
    fast.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    fast.chat_template = CHAT_TEMPLATE
    return fast


def write_tiny_llama(path: Path, seed: int = 0) -> Path:
    """A 2-layer Llama (hidden 32) with the chat tokenizer, saved like a pretrained checkpoint."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    path.mkdir(parents=True, exist_ok=True)
    tok = chat_tokenizer()
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        pad_token_id=tok.pad_token_id,
        eos_token_id=tok.eos_token_id,
        bos_token_id=tok.bos_token_id,
        tie_word_embeddings=False,
    )
    LlamaForCausalLM(cfg).save_pretrained(path)
    return path


def write_tiny_t5(path: Path, seed: int = 0) -> Path:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    path.mkdir(parents=True, exist_ok=True)
    tok = chat_tokenizer(eos="<|im_end|>")
    from tokenizers import processors

    eos_id = tok.eos_token_id
    # T5 tokenizers end every sequence with EOS; the word-level stand-in does the same.
    tok.backend_tokenizer.post_processor = processors.TemplateProcessing(
        single="$A <|im_end|>", special_tokens=[("<|im_end|>", eos_id)]
    )
    tok.save_pretrained(path)
    torch.manual_seed(seed)
    cfg = T5Config(
        vocab_size=len(tok),
        d_model=32,
        d_kv=8,
        d_ff=64,
        num_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        pad_token_id=tok.pad_token_id,
        eos_token_id=eos_id,
        decoder_start_token_id=tok.pad_token_id,
        feed_forward_proj="relu",
        tie_word_embeddings=True,
    )
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    return path


COLOURS = {"sky": "blue", "grass": "green", "sun": "yellow", "rose": "red", "snow": "white", "night": "black"}


def chat_rows(n: int, seed: int = 0) -> list[dict[str, Any]]:
    """Question/answer conversations with a learnable answer (the colour of a thing)."""
    rng = random.Random(seed)
    things = list(COLOURS)
    rows = []
    for i in range(n):
        thing = things[i % len(things)]
        filler = " ".join(
            rng.choice(["please", "thanks", "ok", "tell", "me"]) for _ in range(rng.randint(0, 4))
        )
        msgs = [
            {"role": "user", "content": f"what is the colour of the {thing} {filler}".strip()},
            {"role": "assistant", "content": f"the {thing} is {COLOURS[thing]}"},
        ]
        if i % 3 == 0:
            msgs.insert(0, {"role": "system", "content": "be brief"})
        rows.append({"messages": msgs, "id": i})
    return rows


def seq2seq_rows(n: int, seed: int = 0) -> list[dict[str, str]]:
    rng = random.Random(seed)
    things = list(COLOURS)
    rows = []
    for i in range(n):
        picked = [things[(i + k) % len(things)] for k in range(rng.randint(1, 3))]
        rows.append(
            {
                "source": " ".join(picked) + f" {rng.choice(['please', 'ok', 'thanks'])}",
                "target": " ".join(COLOURS[t] for t in picked),
            }
        )
    return rows


def domain_lines(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    pool = [
        "we",
        "propose",
        "a",
        "new",
        "method",
        "results",
        "show",
        "study",
        "of",
        "cats",
        "dogs",
        "birds",
        "fish",
        "and",
        "in",
        "the",
    ]
    return [" ".join(rng.choice(pool) for _ in range(rng.randint(6, 14))) for _ in range(n)]


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines))
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path
