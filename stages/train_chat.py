"""train_chat: the chat student: LoRA SFT (TRL's SFTTrainer, peft) of a small causal LM on the split's
conversations, loss on the assistant's turns only. Saves the adapter, tokenizer and chat template (and the
merged model with train_chat.merge); DVCLive logs the losses. A killed run resumes from its last checkpoint,
kept under base.state_dir (DVC clears a stage's outs before it runs).

    python stages/train_chat.py --splits data/splits --tools data/raw/tools.json --model-dir models/chat \
        --metrics metrics/train_chat.json --details reports/details/train_chat.json \
        --live-dir dvclive_chat --figure reports/figures/chat_training.svg

Several GPUs, no code change: `accelerate launch stages/train_chat.py …` (the same arguments).
"""
import argparse
import dataclasses
import hashlib
import json
import os
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.generation.tools import declarations, load_tools
from distillery.params import load_params, seed_everything
from distillery.plots import curves_spec, write_svg
from distillery.records import require_records, write_json
from distillery.reports import write_metrics
from distillery.training.sft import META_FILE, chat_examples, tool_call_problems, train_sft

HELP = {"splits": "split's folder (train.jsonl, val.jsonl)", "model_dir": "where the adapter is saved",
        "metrics": "headline metrics (DVC)", "details": "every figure", "live_dir": "DVCLive's folder (losses)",
        "figure": "the loss curves as SVG, for the chat evaluation report"}


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in HELP.items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=text)
    ap.add_argument("--tools", type=Path, help="tool declarations (JSON) for conversations that call tools "
                                               "without declaring them")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()

    params = load_params(args.params)
    base, cfg = params.base, params.train_chat
    seed_everything(base.seed)
    for folder in (args.model_dir, args.live_dir):
        folder.mkdir(parents=True, exist_ok=True)
    if not cfg.enabled:
        write_json(args.model_dir / META_FILE, {"kind": "disabled"})
        write_metrics("train_chat", args.metrics, args.details, {"enabled": False})
        write_svg(args.figure, curves_spec([], "Chat student: not trained (train_chat.enabled: false)", "loss"))
        print("train_chat: skipped (train_chat.enabled: false)")
        return

    tools = declarations(load_tools(args.tools)) if args.tools and args.tools.exists() else None
    train = chat_examples(require_records(args.splits / "train.jsonl", stage="train_chat", producer="split"), tools)
    val = chat_examples(require_records(args.splits / "val.jsonl", stage="train_chat", producer="split"), tools)
    if not train:
        raise SystemExit(f"train_chat: {args.splits / 'train.jsonl'} has no conversation that ends with an "
                         "assistant's answer (documents are not chat examples); set train_chat.enabled: false")
    # A checkpoint belongs to one run: the data, the recipe and the model decide which folder it is in.
    run_key = hashlib.sha256(json.dumps([train, val, dataclasses.asdict(cfg), base.seed], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
    checkpoints = Path(base.state_dir) / "checkpoints" / "train_chat" / run_key
    summary, history = train_sft(train, val, cfg, cfg.student, args.model_dir, base.seed,
                                 live_dir=args.live_dir, checkpoint_dir=checkpoints)
    if int(os.environ.get("RANK", "0")):  # under `accelerate launch`, the first process writes the files
        return
    summary["student"] = cfg.student
    summary["training_tool_calls"] = problems = tool_call_problems(train[:cfg.max_examples or None])
    if problems["invalid"]:
        print(f"train_chat: WARNING: {problems['invalid']} of {problems['calls']} tool calls in the training "
              f"conversations do not fit their declared tools, and the student learns them as shown; e.g. "
              f"{problems['examples'][0]}")
    write_metrics("train_chat", args.metrics, args.details, summary)
    rows = [{"step": h["step"], "series": series, "value": h[key]} for h in history
            for key, series in (("loss", "train loss"), ("eval_loss", "val loss")) if key in h]
    write_svg(args.figure, curves_spec(rows, "Chat student: loss on the assistant's tokens", "cross-entropy"))
    rate = f", {summary['tokens_per_second']} tokens/s" if summary.get("tokens_per_second") else ""
    print(f"train_chat: {summary['train_size']} conversations, loss {summary['first_loss']} → {summary['train_loss']} "
          f"(val {summary['val_loss']}), {summary['seconds_per_epoch']} s/epoch{rate}, "
          f"peak RSS {summary['peak_rss_gb']} GB")


if __name__ == "__main__":
    main()
