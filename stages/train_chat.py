"""train_chat: the chat student: LoRA SFT (TRL's SFTTrainer, peft) of a small causal LM on the split's
conversations, loss on the assistant's turns only. Saves the adapter, tokenizer and chat template (and the
merged model with train_chat.merge); DVCLive logs the losses. A killed run resumes from its last checkpoint,
kept under base.state_dir (DVC clears a stage's outs before it runs).

    python stages/train_chat.py --splits data/splits --tools data/raw/tools.json --model-dir models/chat \
        --metrics metrics/train_chat.json --details reports/details/train_chat.json \
        --live-dir dvclive_chat --figure reports/figures/chat_training.svg

Several GPUs, no code change: `accelerate launch stages/train_chat.py …` (the same arguments).
train_chat.backend together | openai: a hosted fine-tuning job instead (training/hosted.py), the same outputs
plus models/chat/hosted.json; `--dry-run` prints its plan (training tokens × epochs, cost) for `make plan`.
"""
import argparse
import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.job import add_dry_run, fresh, print_plan
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
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    base, cfg = params.base, params.train_chat
    if args.dry_run:
        return plan(args, params)
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
    if cfg.backend != "local":
        return train_hosted(args, params, train)
    # A checkpoint belongs to one run: the data, the recipe and the model decide which folder it is in.
    run_key = hashlib.sha256(json.dumps([train, val, dataclasses.asdict(cfg), base.seed], sort_keys=True,
                                        default=str).encode()).hexdigest()[:16]
    checkpoints = Path(base.state_dir) / "checkpoints" / "train_chat" / run_key
    summary, history = train_sft(train, val, cfg, cfg.student, args.model_dir, base.seed,
                                 live_dir=args.live_dir, checkpoint_dir=checkpoints)
    if int(os.environ.get("RANK", "0")):  # under `accelerate launch`, the first process writes the files
        return
    summary["student"], summary["backend"] = cfg.student, "local"
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


def plan(args, params):
    """`--dry-run` (make plan): a hosted job's training tokens × epochs and cost; a local run costs nothing."""
    cfg = params.train_chat
    empty = {"records": 0, "journal_hits": 0, "cache_hits": 0, "calls": 0, "input_tokens": 0, "output_tokens_max": 0,
             "cost_usd_max": 0.0, "priced": True,
             "provider": f"local/{cfg.student}" if cfg.backend == "local" else f"{cfg.backend}/{cfg.hosted.model}"}
    if not cfg.enabled or cfg.backend == "local" or not fresh(args.splits / "train.jsonl"):
        note = ("local training: no LLM calls, no cost" if cfg.enabled and cfg.backend == "local" else
                "train_chat.enabled is false" if not cfg.enabled else "planned once split has run")
        return print_plan("train_chat", empty, note=note)
    from distillery.providers.finetune import finetune_api
    from distillery.training import hosted

    tools = declarations(load_tools(args.tools)) if args.tools and args.tools.exists() else None
    examples = chat_examples(require_records(args.splits / "train.jsonl", stage="train_chat", producer="split"),
                             tools)[:cfg.max_examples or None]
    api = finetune_api(cfg.backend, cfg.hosted.model or "?", cfg.hosted.base_url)
    hyper, ignored = api.hyperparameters(cfg)
    p = hosted.plan(examples, hyper, cfg.hosted.model, params.base.prices)
    problems = hosted.check_examples(examples, api.vendor, api.min_examples,
                                     cfg.hosted.max_example_tokens or api.max_example_tokens)
    problems = ([] if cfg.hosted.model else ["train_chat.hosted.model is not set"]) + problems[:3] + \
        [p for p in [api.provider.setup_problem()] if p]
    print_plan("train_chat", {**empty, "provider": f"{api.vendor}/{cfg.hosted.model}", "records": len(examples),
                              "input_tokens": p["trained_tokens"], "cost_usd_max": p["cost_usd_max"],
                              "priced": p["priced"], "setup_problems": problems},
               note=f"hosted fine-tuning: {p['tokens']} training tokens × {p['epochs']} epoch(s)")


def train_hosted(args, params, train):
    """The chat student trained by the vendor: checked, uploaded once, one job, polled; hosted.json for evaluate_chat."""
    from distillery.providers.base import ProviderError, SetupError
    from distillery.providers.finetune import finetune_api
    from distillery.training import hosted

    base, cfg = params.base, params.train_chat
    if not cfg.hosted.model:
        raise SystemExit(f"train_chat: backend {cfg.backend} needs train_chat.hosted.model (the vendor's base model)")
    api = finetune_api(cfg.backend, cfg.hosted.model, cfg.hosted.base_url)
    examples = train[:cfg.max_examples or None]
    problems = hosted.check_examples(examples, api.vendor, api.min_examples,
                                     cfg.hosted.max_example_tokens or api.max_example_tokens)
    if problems:
        shown = "\n  ".join(problems[:20]) + (f"\n  … and {len(problems) - 20} more" if len(problems) > 20 else "")
        raise SystemExit(f"train_chat: the training file breaks {api.vendor}'s rules; nothing was uploaded:\n  {shown}")
    try:
        meta, history = hosted.train(api, examples, cfg, base)
    except (ProviderError, SetupError) as exc:
        raise SystemExit(f"train_chat: {api.vendor}: {exc}") from None
    except hosted.JobFailed as exc:
        print(exc, file=sys.stderr)
        raise SystemExit(5) from None
    write_json(args.model_dir / hosted.HOSTED_FILE, meta)
    write_json(args.model_dir / META_FILE, meta)
    from dvclive import Live

    with Live(dir=str(args.live_dir), save_dvc_exp=False, dvcyaml=False) as live:
        for h in history:
            live.step = h["step"]
            live.log_metric("train/loss", round(h["loss"], 4))
            if "eval_loss" in h:
                live.log_metric("val/loss", round(h["eval_loss"], 4))
    losses = [h["loss"] for h in history]
    evals = [h["eval_loss"] for h in history if "eval_loss" in h]
    summary = {"enabled": True, "backend": cfg.backend, "train_size": len(examples), "epochs": meta["hyperparameters"]["n_epochs"],
               "first_loss": losses[0] if losses else None, "train_loss": losses[-1] if losses else None,
               "val_loss": evals[-1] if evals else None, **{k: meta[k] for k in (
                   "job_id", "fine_tuned_model", "base_model", "trained_tokens", "cost_usd", "hyperparameters", "ignored")}}
    write_metrics("train_chat", args.metrics, args.details, summary)
    rows = [{"step": h["step"], "series": series, "value": h[key]} for h in history
            for key, series in (("loss", "train loss"), ("eval_loss", "val loss")) if key in h]
    write_svg(args.figure, curves_spec(rows, f"Chat student ({api.vendor} job): loss as the vendor reports it", "loss"))
    for name, why in meta["ignored"].items():
        print(f"train_chat: {api.vendor} does not take train_chat.{name}: {why}")
    print(f"train_chat: {meta['fine_tuned_model']} ({api.vendor} job {meta['job_id']}), {len(examples)} conversations, "
          f"loss {summary['first_loss']} → {summary['train_loss']}, {meta['trained_tokens']} trained tokens, "
          f"cost ${meta['cost_usd'] if meta['cost_usd'] is not None else '?'}")


if __name__ == "__main__":
    main()
