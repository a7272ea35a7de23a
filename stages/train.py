"""train: fine-tune the student (a regression head over every filter dimension; LoRA as a switch)
with transformers' Trainer; keep the best checkpoint by validation MAE. DVCLive logs the curves.

    python stages/train.py --splits data/splits --model-dir models/student --metrics metrics/train.json \
        --details reports/details/train.json --live-dir dvclive --figure reports/figures/training.svg
"""
import argparse
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.evaluation.regression import baseline_mae
from distillery.params import load_params, seed_everything
from distillery.plots import curves_spec, write_svg
from distillery.records import require_records, write_json
from distillery.reports import write_metrics
from distillery.training.regression import META_FILE, curves, train_student

HELP = {"splits": "split's folder (train.jsonl, val.jsonl)", "model_dir": "where the trained student is saved",
        "metrics": "headline metrics (DVC)", "details": "every figure", "live_dir": "DVCLive's folder (curves)",
        "figure": "the training curves as SVG, for the evaluation report"}


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in HELP.items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=text)
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt = params.base, params.filter
    cfg = params.train
    seed_everything(base.seed)

    if not cfg.enabled:
        for folder in (args.model_dir, args.live_dir):
            folder.mkdir(parents=True, exist_ok=True)
        write_json(args.model_dir / META_FILE, {"kind": "disabled"})
        write_metrics("train", args.metrics, args.details, {"enabled": False})
        write_svg(args.figure, curves_spec([], "Scorer student: not trained (train.enabled: false)", "error"))
        print("train: skipped (train.enabled: false)")
        return
    train = require_records(args.splits / "train.jsonl", stage="train", producer="split")
    val = require_records(args.splits / "val.jsonl", stage="train", producer="split",
                          hint="Too few labeled records for a validation split: label more, or raise split.val.")
    baseline = baseline_mae(train, val, filt)
    summary, history = train_student(train, val, filt, cfg, base.student, args.model_dir, base.seed,
                                     args.live_dir, baseline)
    write_metrics("train", args.metrics, args.details, summary)
    write_svg(args.figure, curves_spec(curves(history, filt.scale_max - filt.scale_min, baseline),
                                       "Training: train RMSE per step, val MAE per epoch (filter scale)",
                                       "error on the filter's scale"))
    print(f"train: best val MAE {summary['best_val_mae']:.3f} (baseline {baseline:.3f}), "
          f"{summary['train_size']} train records")


if __name__ == "__main__":
    main()
