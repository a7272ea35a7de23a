"""train: fine-tune the student (a regression head over every filter dimension; LoRA as a switch)
with transformers' Trainer; keep the best checkpoint by validation MAE.

    python stages/train.py --splits data/splits --model-dir models/student \
        --metrics metrics/train.json --loss-curve plots/train_loss.json --val-curve plots/val_mae.json
"""
import argparse
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.params import load_params, seed_everything
from distillery.records import require_records, write_json
from distillery.training.regression import curves, train_student


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("splits", "model_dir", "metrics", "loss_curve", "val_curve"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt = params.base, params.filter
    cfg = params.train
    seed_everything(base.seed)

    train = require_records(args.splits / "train.jsonl", stage="train", producer="split")
    val = require_records(args.splits / "val.jsonl", stage="train", producer="split",
                          hint="Too few labeled records for a validation split: label more, or raise split.val.")
    summary, history = train_student(train, val, filt, cfg, base.student, args.model_dir, base.seed)
    write_json(args.metrics, summary)
    loss, val_mae = curves(history)
    write_json(args.loss_curve, loss)
    write_json(args.val_curve, val_mae)
    print(f"train: best val MAE {summary['best_val_mae']:.3f} ({summary['train_size']} train records)")


if __name__ == "__main__":
    main()
