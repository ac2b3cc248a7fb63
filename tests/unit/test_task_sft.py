"""SFT task: assistant-only loss mask, conversation validation with file:line, loss contract, decoding."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
from generative_helpers import chat_rows, chat_tokenizer, write_jsonl, write_tiny_llama

from tuneproof.data.chat import check_messages, conversation_row_check
from tuneproof.data.prepare import prepare_data, read_and_validate
from tuneproof.errors import DataValidationError, ProtocolError, TemplateError
from tuneproof.protocol.loader import parse_protocol
from tuneproof.tasks.base import TaskEnv
from tuneproof.tasks.generation import causal_nll, greedy_generate, sum_loss
from tuneproof.tasks.registry import get_task
from tuneproof.tasks.sft import IGNORE, encode_conversation, pack_features, packed_collate
from tuneproof.train.features import pad_collate


@pytest.fixture(scope="module")
def tok() -> Any:
    return chat_tokenizer()


@pytest.fixture(scope="module")
def tiny_llama(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny_llama(tmp_path_factory.mktemp("tiny-llama"))


def _protocol(tmp: Path, data: Path, **data_keys: str) -> Any:
    extra = "".join(f"\n  {k}: {v}" for k, v in data_keys.items())
    return parse_protocol(
        f"name: t\ntask: sft\nmodel: {{source: {tmp}, max_length: 64}}\ndata:\n  files: [{data}]{extra}\n"
    )


# -- the loss mask -------------------------------------------------------------------------------
CONVERSATION = [
    {"role": "system", "content": "be brief"},
    {"role": "user", "content": "hello there"},
    {"role": "assistant", "content": "hi friend"},
    {"role": "user", "content": "what is the colour of the sky"},
    {"role": "assistant", "content": "blue"},
]


def test_loss_mask_covers_exactly_the_assistant_tokens(tok: Any) -> None:
    enc = encode_conversation(tok, CONVERSATION, None)
    tokens = tok.convert_ids_to_tokens(enc["input_ids"])
    assert tokens == [
        "<|im_start|>", "system", "be", "brief", "<|im_end|>",
        "<|im_start|>", "user", "hello", "there", "<|im_end|>",
        "<|im_start|>", "assistant", "hi", "friend", "<|im_end|>",
        "<|im_start|>", "user", "what", "is", "the", "colour", "of", "the", "sky", "<|im_end|>",
        "<|im_start|>", "assistant", "blue", "<|im_end|>",
    ]  # fmt: skip
    trained = [t if lab != IGNORE else None for t, lab in zip(tokens, enc["labels"], strict=True)]
    # Token by token: only the answers and the end-of-turn marker that closes each one.
    expected = [None] * 12 + ["hi", "friend", "<|im_end|>"] + [None] * 12 + ["blue", "<|im_end|>"]
    assert trained == expected
    # Where a token is trained, its label is the token itself (the model shifts internally).
    for ids, lab in zip(enc["input_ids"], enc["labels"], strict=True):
        assert lab in (IGNORE, ids)
    assert enc["n_loss"] == 5
    # The generation prompt is the conversation up to the final assistant turn's opening.
    assert tok.convert_ids_to_tokens(enc["prompt_ids"]) == tokens[:27]


def test_weight_zero_turn_is_not_trained(tok: Any) -> None:
    conv = [dict(m) for m in CONVERSATION]
    conv[2]["weight"] = 0
    enc = encode_conversation(tok, conv, None)
    trained = [
        t
        for t, lab in zip(tok.convert_ids_to_tokens(enc["input_ids"]), enc["labels"], strict=True)
        if lab != IGNORE
    ]
    assert trained == ["blue", "<|im_end|>"]


def test_truncation_keeps_the_prompt_end_and_counts_loss_tokens(tok: Any) -> None:
    enc = encode_conversation(tok, CONVERSATION, 14)
    assert len(enc["input_ids"]) == 14 and enc["truncated"]
    assert enc["n_loss"] == 2  # "hi", "friend" survive; "<|im_end|>" at position 14 is cut
    assert enc["prompt_truncated"] and len(enc["prompt_ids"]) == 14
    assert tok.convert_ids_to_tokens(enc["prompt_ids"])[-2:] == ["<|im_start|>", "assistant"]


def test_template_that_rewrites_history_is_refused() -> None:
    bad = chat_tokenizer()
    # Drops earlier assistant turns, as some reasoning templates do: prefixes no longer line up.
    bad.chat_template = (
        "{% for m in messages %}{% if m['role'] != 'assistant' or loop.last %}<|im_start|>{{ m['role'] }}\n"
        "{{ m['content'] }}<|im_end|>\n{% endif %}{% endfor %}"
        "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    with pytest.raises(TemplateError, match="prefix"):
        encode_conversation(bad, CONVERSATION, None)


# -- conversation validation ---------------------------------------------------------------------
def test_every_conversation_problem_is_reported_with_file_and_line(tmp_path: Path) -> None:
    rows = [
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]},  # ok
        {"messages": [{"role": "bot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "x"}]},
        {"messages": [{"role": "user", "content": "only a question"}]},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
            ]
        },
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b"},
                {"role": "system", "content": "late"},
            ]
        },
        {"messages": "not a list"},
        {"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b", "weight": 2}]},
        {"messages": []},
        {
            "messages": [
                {"role": "user", "content": "a"},
                {"role": "assistant", "content": "b", "tool_calls": []},
            ]
        },
    ]
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    protocol = _protocol(tmp_path, data, text_column="messages")
    task: Any = get_task(protocol)
    with pytest.raises(DataValidationError) as err:
        read_and_validate(protocol, tmp_path, task.target_check(), task.stratify)
    found = {(p.where.rsplit(":", 1)[1], p.message) for p in err.value.problems}
    assert all(p.where.startswith(f"{data}:") for p in err.value.problems)
    lines = {line for line, _ in found}
    assert lines == {str(i) for i in range(2, 11)}  # line 1 is valid; every bad line is reported
    text = "\n".join(f"{line} {msg}" for line, msg in sorted(found))
    assert "2 messages[0]: role 'bot' is not one of system, user, assistant" in text
    assert "3 messages[0]: empty user turn" in text
    assert "4 no assistant turn" in text
    assert "5 messages[1]: expected an assistant turn, got user" in text
    assert "6 messages[2]: a system message may only come first" in text
    assert "7 'messages' is a string; chat data needs a list of messages" in text
    assert "8 messages[1]: weight must be 0 or 1" in text
    assert "9 the conversation has no messages" in text
    assert "10 messages[1]: unsupported key(s) 'tool_calls'" in text


def test_check_messages_requires_a_user_turn_last_when_a_target_column_answers() -> None:
    _, problems = check_messages(
        [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "user"
    )
    assert problems == ["with a target column the conversation must end with a user turn"]


def test_prompt_completion_and_evals_formats_become_one_conversation(tmp_path: Path, tok: Any) -> None:
    check = conversation_row_check("prompt", "completion")
    text, label, errors = check({"prompt": "hello there", "completion": "hi friend"})
    assert errors == [] and label == "hi friend"
    assert json.loads(text) == [
        {"role": "user", "content": "hello there"},
        {"role": "assistant", "content": "hi friend"},
    ]
    check = conversation_row_check("input", "ideal")
    sys_user = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hello there"}]
    text, label, errors = check({"input": sys_user, "ideal": ["hi friend"]})
    assert errors == [] and label == "hi friend"
    _, _, errors = check({"input": sys_user, "ideal": ""})
    assert errors == [(None, "empty 'ideal'")]
    # The task appends the target as the final assistant turn, which alone is trained on.
    data = write_jsonl(tmp_path / "pc.jsonl", [{"prompt": "hello there", "completion": "hi friend"}])
    task: Any = get_task(_protocol(tmp_path, data, text_column="prompt", label_column="completion"))
    enc = encode_conversation(tok, task.conversation(text, label), None)  # type: ignore[attr-defined]
    trained = [
        t
        for t, lab in zip(tok.convert_ids_to_tokens(enc["input_ids"]), enc["labels"], strict=True)
        if lab != IGNORE
    ]
    assert trained == ["hi", "friend", "<|im_end|>"]


def test_over_length_fail_lists_each_row(tmp_path: Path, tiny_llama: Path) -> None:
    rows = chat_rows(6)
    rows[4]["messages"][-1]["content"] = " ".join(["blue"] * 80)
    data = write_jsonl(tmp_path / "chat.jsonl", rows)
    protocol = parse_protocol(
        f"name: t\ntask: sft\nmodel: {{source: {tiny_llama}, max_length: 32}}\n"
        f"data: {{files: [{data}], text_column: messages}}\ncleaning: {{over_length: fail}}\n"
    )
    task: Any = get_task(protocol)
    with pytest.raises(DataValidationError) as err:
        prepare_data(
            protocol,
            tmp_path,
            token_lengths=task.token_lengths(chat_tokenizer()),  # type: ignore[attr-defined]
            target_check=task.target_check(),
            stratify=False,
        )
    assert [p.where for p in err.value.problems] == ["chat.jsonl:5"]
    assert "over model.max_length 32" in err.value.problems[0].message


# -- loss, scoring, decoding ---------------------------------------------------------------------
def _model(path: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path).eval()


def _batch(tok: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    convs = [
        CONVERSATION,
        CONVERSATION[1:3],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
    ]
    feats = [encode_conversation(tok, c, None) for c in convs]
    return pad_collate(tok.pad_token_id, label_pad=IGNORE)(feats), feats


def test_loss_contract_matches_the_model_and_the_collated_count(tiny_llama: Path, tok: Any) -> None:
    model = _model(tiny_llama)
    batch, feats = _batch(tok)
    with torch.no_grad():
        total, count = sum_loss(causal_nll)(model, batch)
        # Same numbers with every logit computed (the fast path projects only labelled positions).
        logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        ref = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]),
            batch["labels"][:, 1:].reshape(-1),
            ignore_index=IGNORE,
            reduction="sum",
        )
    assert count == batch["_count"] == sum(f["n_loss"] for f in feats) == 5 + 3 + 2
    assert float(total) == pytest.approx(float(ref), rel=1e-5)
    # transformers' own loss is the mean over the same tokens.
    with torch.no_grad():
        hf = model(input_ids=batch["input_ids"][:1], labels=batch["labels"][:1]).loss
        first, n_first = sum_loss(causal_nll)(
            model, {k: v[:1] for k, v in batch.items() if torch.is_tensor(v)}
        )
    assert float(first) / n_first == pytest.approx(float(hf), rel=1e-5)


def test_batched_greedy_decoding_matches_one_at_a_time_in_input_order(tiny_llama: Path, tok: Any) -> None:
    model = _model(tiny_llama)
    prompts = [
        encode_conversation(tok, c, None)["prompt_ids"]
        for c in (CONVERSATION, CONVERSATION[1:3], CONVERSATION[:3] + CONVERSATION[3:])
    ]
    prompts[1] = prompts[1][:7]  # three different lengths, so left padding matters
    together = greedy_generate(model, tok, prompts, 6, 8, "fp32", decoder_only=True)
    alone = [greedy_generate(model, tok, [p], 6, 1, "fp32", decoder_only=True)[0] for p in prompts]
    assert together == alone
    assert len(together) == 3


def test_task_scores_and_generates_in_feature_order(tmp_path: Path, tiny_llama: Path) -> None:
    import pandas as pd

    data = write_jsonl(tmp_path / "chat.jsonl", chat_rows(12))
    protocol = parse_protocol(
        f"name: t\ntask: sft\nmodel: {{source: {tiny_llama}, max_length: 48}}\n"
        f"data: {{files: [{data}], text_column: messages}}\n"
        "generation: {test_examples: 4, max_new_tokens: 3}\n"
    )
    task: Any = get_task(protocol, TaskEnv(tokenizer=chat_tokenizer()))
    check = task.target_check().check_row  # type: ignore[attr-defined]
    rows = [check({"messages": r["messages"]}) for r in chat_rows(12)]
    df = pd.DataFrame(
        {"row_id": [f"r{i}" for i in range(12)], "text": [r[0] for r in rows], "label": [r[1] for r in rows]}
    )
    feats = task.features(df, chat_tokenizer(), tmp_path)
    model = _model(tiny_llama)
    out = task.predict(model, feats, 0, 5, "fp32")
    assert [g is not None for g in out["generation"]] == [True] * 4 + [False] * 8
    # Per-example NLL does not depend on which other examples share the batch.
    for i in (0, 7, 11):
        single = task.predict(model, [feats[i]], 0, 1, "fp32")
        assert single["nll"][0] == pytest.approx(out["nll"][i], rel=1e-5)
        assert single["tokens"][0] == out["tokens"][i] == feats[i]["n_loss"]
    assert np.all(out["tokens"] > 0)


def test_packed_rows_give_the_same_loss_as_separate_examples(tiny_llama: Path, tok: Any) -> None:
    model = _model(tiny_llama)
    convs = [CONVERSATION, CONVERSATION[1:3], CONVERSATION[3:], CONVERSATION[:3]]
    feats = [{**encode_conversation(tok, c, None), "row_id": f"r{i}"} for i, c in enumerate(convs)]
    packed = pack_features(feats, 40)
    assert sorted(len(p["input_ids"]) for p in packed) == [29, 39]  # 29 + 10, then 15 + 14
    assert sorted(p["row_id"] for p in packed) == ["r0+r1", "r3+r2"]
    assert packed[0]["position_ids"][:3] == [0, 1, 2] and packed[0]["position_ids"][29] == 0
    collate = packed_collate(tok.pad_token_id)
    with torch.no_grad():
        together, n_together = sum_loss(causal_nll)(model, collate(packed))
        apart, n_apart = sum_loss(causal_nll)(model, collate(feats))
    # Attention stays within each example, so packing changes neither the loss nor the token count.
    assert n_together == n_apart == collate(packed)["_count"] == sum(f["n_loss"] for f in feats)
    assert float(together) == pytest.approx(float(apart), rel=1e-5)
    assert collate(packed)["_real_tokens"] == sum(len(f["input_ids"]) for f in feats)


def test_packing_is_off_on_cpu_unless_asked(tmp_path: Path) -> None:
    base = f"name: t\ntask: sft\nmodel: {{source: {tmp_path}}}\ndata: {{files: [c.jsonl], text_column: m}}\n"
    assert get_task(parse_protocol(base)).packing is torch.cuda.is_available()  # type: ignore[attr-defined]
    assert get_task(parse_protocol(base + "sft: {packing: true}\n")).packing is True  # type: ignore[attr-defined]


# -- GGUF conversion cache -----------------------------------------------------------------------
def test_gguf_is_converted_once_per_file_content(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tuneproof.protocol.schema import ModelSpec
    from tuneproof.train import gguf_cache
    from tuneproof.train.model_source import ModelRef, loadable

    calls: list[Path] = []

    def fake_convert(src: Path, name: str, dest: Path) -> None:
        calls.append(dest)
        dest.mkdir(parents=True)
        (dest / "config.json").write_text("{}")

    monkeypatch.setattr(gguf_cache, "_convert", fake_convert)
    src = tmp_path / "pkg"
    src.mkdir()
    (src / "m.gguf").write_bytes(b"weights-v1")
    root = tmp_path / "cache"
    first = gguf_cache.converted_folder(src, "m.gguf", root)
    assert gguf_cache.converted_folder(src, "m.gguf", root) == first and len(calls) == 1
    assert json.loads((first / gguf_cache.DONE).read_text())["sha256"].startswith(first.name)
    (src / "m.gguf").write_bytes(b"weights-v2")  # a changed file converts again, into its own folder
    second = gguf_cache.converted_folder(src, "m.gguf", root)
    assert second != first and len(calls) == 2

    def crash(src: Path, name: str, dest: Path) -> None:
        dest.mkdir(parents=True)
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf_cache, "_convert", crash)
    (src / "m.gguf").write_bytes(b"weights-v3")
    with pytest.raises(RuntimeError):
        gguf_cache.converted_folder(src, "m.gguf", root)
    assert sorted(p.name for p in root.iterdir()) == sorted([first.name, second.name])  # no half folder

    monkeypatch.setattr(gguf_cache, "_convert", fake_convert)
    monkeypatch.setattr(gguf_cache, "cache_root", lambda: root)
    ref = ModelRef(str(src), True, ModelSpec(source=str(src), gguf_file="m.gguf"))
    local = loadable(ref)
    assert Path(local.name_or_path).parent == root and local.spec.gguf_file is None
    assert local.load_kwargs()["use_safetensors"] is True


def test_prompt_completion_columns_of_any_table_get_the_protocol_system_prompt(tmp_path: Path) -> None:
    table = tmp_path / "pairs.csv"
    pd.DataFrame(
        {"abstract": ["we study a", "we study b", "we study c"], "title": ["On a", "On b", "On c"]}
    ).to_csv(table, index=False)
    protocol = parse_protocol(
        f"name: t\ntask: sft\nmodel: {{source: {tmp_path}, max_length: 64}}\n"
        f"data: {{files: [{table}], text_column: abstract, label_column: title}}\n"
        "sft: {system_prompt: Write the title.}\n"
    )
    task: Any = get_task(protocol)
    rows, *_ = read_and_validate(protocol, tmp_path, task.target_check(), task.stratify)
    assert [json.loads(r["text"]) for r in rows][1] == [
        {"role": "system", "content": "Write the title."},
        {"role": "user", "content": "we study b"},
        {"role": "assistant", "content": "On b"},
    ]
    assert [r["label"] for r in rows] == ["On a", "On b", "On c"]
    # a row's own system message wins over the protocol's
    check = conversation_row_check("input", "ideal", "Write the title.")
    own = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "q"}]
    text, _, errors = check({"input": own, "ideal": "a"})
    assert errors == [] and json.loads(text)[0] == {"role": "system", "content": "be brief"}
    with pytest.raises(ProtocolError, match=r"sft\.system_prompt"):
        parse_protocol(
            f"name: t\ntask: sft\nmodel: {{source: {tmp_path}}}\n"
            f"data: {{files: [{table}], text_column: abstract, label_column: title}}\n"
            "sft: {system_prompt: ''}\n"
        )
