"""evaluate: the student against the oracle on val and test: MAE / RMSE overall and per dimension,
tier accuracy, and a DEPLOY / REVIEW / FAIL verdict from thresholds in params.

    python stages/evaluate.py --splits data/splits --model-dir models/student \
        --report reports/evaluation.md --metrics metrics/evaluate.json --predictions plots/test_predictions.json \
        [--gate metrics/validate.json]
"""
import argparse
import json
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.evaluation.regression import baseline_mae, deploy_verdict, error_metrics
from distillery.params import load_params, seed_everything
from distillery.records import require_records, write_json
from distillery.reports import evaluation_report
from distillery.labeling.scoring import weighted_score
from distillery.training.regression import predict


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("splits", "model_dir", "report", "metrics", "predictions"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path)
    ap.add_argument("--gate", type=Path, help="validate's metrics: the report says when the oracle check failed or was skipped")
    ap.add_argument("--params", default="params.yaml", type=Path)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt = params.base, params.filter
    cfg = params.evaluate
    seed_everything(base.seed)

    splits = {s: require_records(args.splits / f"{s}.jsonl", stage="evaluate", producer="split")
              for s in ("train", "val", "test")}
    preds = {s: predict(splits[s], args.model_dir) for s in ("val", "test")}
    metrics = {s: error_metrics(preds[s], splits[s], filt) for s in ("val", "test")}
    metrics["baseline_test_mae"] = baseline_mae(splits["train"], splits["test"], filt)
    verdict, reasons = deploy_verdict(metrics["test"], metrics["val"], cfg.thresholds, metrics["baseline_test_mae"])
    metrics.update(verdict=verdict, reasons=reasons)

    dims = list(filt.dimensions)
    write_json(args.predictions, [
        {"id": r["id"], "oracle_score": r["score"], "predicted_score": weighted_score(dict(zip(dims, p)), filt)}
        for r, p in zip(splits["test"], preds["test"].tolist())])
    args.report.parent.mkdir(parents=True, exist_ok=True)
    gate = json.loads(args.gate.read_text()) if args.gate and args.gate.exists() else None
    args.report.write_text(evaluation_report(metrics, verdict, reasons, gate), encoding="utf-8")
    write_json(args.metrics, metrics)
    print(f"evaluate: {verdict}, test MAE {metrics['test']['mae']:.3f} (baseline {metrics['baseline_test_mae']:.3f})")


if __name__ == "__main__":
    main()
