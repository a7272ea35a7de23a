"""validate: the calibration check again on a fresh sample (different seed, disjoint from calibration's),
so a prompt tuned to the calibration sample shows up as drift. label is gated on this verdict.

    python stages/validate.py --corpus data/raw/corpus.jsonl --prompt prompts/oracle.md \
        --calibration-sample data/calibration/sample.jsonl --calibration-metrics metrics/calibrate.json \
        --sample data/validation/sample.jsonl --labeled data/validation/labeled.jsonl \
        --report reports/validation.md --metrics metrics/validate.json
"""
import argparse
import json
from pathlib import Path

from distillery.calibration import assess, stratified_sample
from distillery.llm import Engine
from distillery.oracle import OraclePrompt, label_all, plan_labels
from distillery.params import BaseParams, FilterParams, SampleParams, load_section, seed_everything
from distillery.records import load_records, write_json, write_records


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "prompt", "calibration_sample", "calibration_metrics", "sample", "labeled",
                 "report", "metrics"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print the plan (calls, tokens, cost); call nothing")
    args = ap.parse_args()

    base = load_section(args.params, "base", BaseParams)
    filt = load_section(args.params, "filter", FilterParams)
    cfg = load_section(args.params, "validate", SampleParams)
    calibration_cfg = load_section(args.params, "calibrate", SampleParams)
    if cfg.seed == calibration_cfg.seed:
        raise SystemExit("validate.seed must differ from calibrate.seed: validation needs a fresh sample")
    seed_everything(base.seed)

    # A dry run before calibrate has run cannot exclude its sample; the estimate is the same size.
    exclude = {r["id"] for r in load_records(args.calibration_sample)} if args.calibration_sample.exists() else set()
    sample = stratified_sample(load_records(args.corpus), cfg, exclude=exclude)
    engine = Engine.for_stage(base.oracle, base)
    if args.dry_run:
        print("PLAN " + json.dumps({"stage": "validate", **plan_labels(sample, engine, OraclePrompt(args.prompt), filt)}))
        return
    labeled, failures = label_all(sample, engine, OraclePrompt(args.prompt), filt, desc="validate")
    calibration = json.loads(args.calibration_metrics.read_text())
    metrics, report = assess("Oracle validation (fresh sample)", sample, labeled, failures, filt,
                             cfg.thresholds, baseline=calibration)
    metrics["calibration_verdict"] = calibration["verdict"]

    write_records(args.sample, sample)
    write_records(args.labeled, labeled)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    write_json(args.metrics, {**metrics, **engine.stats.as_metrics(), "seed": cfg.seed})
    print(f"validate: {metrics['verdict']} ({'; '.join(metrics['reasons']) or 'all figures within thresholds'})")


if __name__ == "__main__":
    main()
