"""evaluate: the student against the oracle on val and test: MAE / RMSE overall and per dimension,
tier accuracy, and a DEPLOY / REVIEW / FAIL verdict from thresholds in params.

    python stages/evaluate.py --splits data/splits --model-dir models/student \
        --report reports/evaluation.md --metrics metrics/evaluate.json --details reports/details/evaluate.json \
        --predictions plots/test_predictions.json --figure reports/figures/test_predictions.svg \
        [--training-figure reports/figures/training.svg] [--gate reports/details/validate.json]
"""
import argparse
import json
import os
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.evaluation.regression import baseline_mae, deploy_verdict, error_metrics
from distillery.params import load_params, seed_everything
from distillery.plots import scatter_spec, write_svg
from distillery.records import require_records, write_json, write_text
from distillery.reports import evaluation_report, write_metrics
from distillery.labeling.scoring import weighted_score
from distillery.training.regression import predict


HELP = {"splits": "split's folder (train/val/test.jsonl)", "model_dir": "the trained student",
        "report": "the markdown report", "metrics": "headline metrics (DVC)", "details": "every figure",
        "predictions": "test predictions for `dvc plots`", "figure": "the student-vs-oracle scatter as SVG"}


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in HELP.items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=text)
    ap.add_argument("--training-figure", type=Path, help="train's curves (SVG), embedded in the report")
    ap.add_argument("--gate", type=Path, help="validate's details: the report says when the oracle check failed or was skipped")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt = params.base, params.filter
    cfg = params.evaluate
    seed_everything(base.seed)

    if not params.train.enabled:
        write_json(args.predictions, [])
        write_svg(args.figure, scatter_spec([], "oracle_score", "predicted_score", "Scorer student not trained"))
        write_text(args.report, "# Student evaluation\n\nSkipped: `train.enabled` is false in params.yaml.\n")
        write_metrics("evaluate", args.metrics, args.details, {"verdict": "SKIPPED"})
        print("evaluate: skipped (train.enabled: false)")
        return
    splits = {s: require_records(args.splits / f"{s}.jsonl", stage="evaluate", producer="split")
              for s in ("train", "val", "test")}
    preds = {s: predict(splits[s], args.model_dir) for s in ("val", "test")}
    metrics = {s: error_metrics(preds[s], splits[s], filt) for s in ("val", "test")}
    metrics["baseline_test_mae"] = baseline_mae(splits["train"], splits["test"], filt)
    verdict, reasons = deploy_verdict(metrics["test"], metrics["val"], cfg.thresholds, metrics["baseline_test_mae"])
    metrics.update(verdict=verdict, reasons=reasons)

    dims = list(filt.dimensions)
    points = [{"id": r["id"], "oracle_score": r["score"], "predicted_score": weighted_score(dict(zip(dims, p)), filt)}
              for r, p in zip(splits["test"], preds["test"].tolist())]
    write_json(args.predictions, points)
    write_svg(args.figure, scatter_spec(points, "oracle_score", "predicted_score",
                                        "Student vs oracle weighted score (test); right answers lie on y = x"))
    args.report.parent.mkdir(parents=True, exist_ok=True)
    gate = json.loads(args.gate.read_text()) if args.gate and args.gate.exists() else None
    figures = [os.path.relpath(f, args.report.parent) for f in (args.training_figure, args.figure) if f and f.exists()]
    args.report.write_text(evaluation_report(metrics, verdict, reasons, gate, figures), encoding="utf-8")
    write_metrics("evaluate", args.metrics, args.details, metrics)
    print(f"evaluate: {verdict}, test MAE {metrics['test']['mae']:.3f} (baseline {metrics['baseline_test_mae']:.3f})")


if __name__ == "__main__":
    main()
