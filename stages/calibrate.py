"""calibrate: try the oracle prompt on a small stratified sample before labeling the corpus.

Reads the corpus (records with `expect` hints) and prompts/oracle.md; writes the sample, its labels,
a markdown report and metrics with a PASS / REVIEW / FAIL verdict.

    python stages/calibrate.py --corpus data/raw/corpus.jsonl --prompt prompts/oracle.md \
        --sample data/calibration/sample.jsonl --labeled data/calibration/labeled.jsonl \
        --report reports/calibration.md --metrics metrics/calibrate.json
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
    for name in ("corpus", "prompt", "sample", "labeled", "report", "metrics"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print the plan (calls, tokens, cost); call nothing")
    args = ap.parse_args()

    base = load_section(args.params, "base", BaseParams)
    filt = load_section(args.params, "filter", FilterParams)
    cfg = load_section(args.params, "calibrate", SampleParams)
    seed_everything(base.seed)

    sample = stratified_sample(load_records(args.corpus), cfg)
    engine = Engine.for_stage(base.oracle, base)
    if args.dry_run:
        print("PLAN " + json.dumps({"stage": "calibrate", **plan_labels(sample, engine, OraclePrompt(args.prompt), filt)}))
        return
    labeled, failures = label_all(sample, engine, OraclePrompt(args.prompt), filt, desc="calibrate")
    metrics, report = assess("Oracle calibration", sample, labeled, failures, filt, cfg.thresholds)

    write_records(args.sample, sample)
    write_records(args.labeled, labeled)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    write_json(args.metrics, {**metrics, **engine.stats.as_metrics(), "seed": cfg.seed})
    print(f"calibrate: {metrics['verdict']} ({'; '.join(metrics['reasons']) or 'all figures within thresholds'})")


if __name__ == "__main__":
    main()
