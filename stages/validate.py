"""validate: the calibration check again on a fresh sample (different seed, disjoint from calibration's),
so a prompt tuned to the calibration sample shows up as drift. label is gated on this verdict.

    python stages/validate.py --corpus data/raw/corpus.jsonl --prompt prompts/oracle.md \
        --calibration-sample data/calibration/sample.jsonl --calibration-metrics metrics/calibrate.json \
        --sample data/validation/sample.jsonl --labeled data/validation/labeled.jsonl \
        --failures data/validation/failures.jsonl --report reports/validation.md --metrics metrics/validate.json
"""
import argparse
import json
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.engine import Engine
from distillery.engine.job import JobRunner, add_dry_run, fresh, planned_corpus, print_plan, run_job
from distillery.labeling.calibration import assess, stratified_sample, with_expect_from_labels, write_skipped
from distillery.labeling.oracle import OracleJob, OraclePrompt
from distillery.params import load_params, seed_everything
from distillery.records import load_records, write_records
from distillery.reports import write_metrics


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "prompt", "calibration_sample", "calibration_metrics", "sample", "labeled",
                 "failures", "report", "metrics", "details"):
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    cfg = params.validate
    seed_everything(params.base.seed)

    # A dry run before calibrate has (re)run cannot exclude its sample; the estimate is the same size.
    known = fresh(args.calibration_sample) if args.dry_run else True
    exclude = {r["id"] for r in load_records(args.calibration_sample)} if known else set()
    if params.calibrate.skip and not args.dry_run:
        write_skipped("validate", "Oracle validation (fresh sample)", sample=args.sample, labeled=args.labeled,
                      failures=args.failures, report=args.report, metrics=args.metrics, details=args.details)
        print("validate: SKIPPED (calibrate.skip)")
        return
    path, fallback = planned_corpus(args)
    corpus = with_expect_from_labels(load_records(path), params.filter)
    try:
        sample = [] if params.calibrate.skip else stratified_sample(corpus, cfg, exclude=exclude, section="validate")
    except ValueError as exc:  # too few records of a kind for the sample asked for: a setting, not a bug
        raise SystemExit(f"validate: {exc}") from None
    engine = Engine.for_stage(params.base.oracle, params.base, "validate")
    runner = JobRunner(OracleJob(OraclePrompt(args.prompt), params.filter, engine, name="validate"), engine)
    if args.dry_run:
        print_plan("validate", runner.plan(sample), corpus=str(path), estimated_from_fallback=fallback)
        return
    labeled, failures = run_job(runner, sample).in_order(sample)
    failures = [f.to_record() for f in failures]
    calibration = json.loads(args.calibration_metrics.read_text())
    metrics, report = assess("Oracle validation (fresh sample)", sample, labeled, failures, params.filter,
                             params.calibrate.thresholds, baseline=calibration, drift_max=cfg.drift_max)
    metrics["calibration_verdict"] = calibration["verdict"]

    write_records(args.sample, sample)
    write_records(args.labeled, labeled)
    write_records(args.failures, failures)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    write_metrics("validate", args.metrics, args.details, {**metrics, **engine.stats.as_metrics()})
    print(f"validate: {metrics['verdict']} ({'; '.join(metrics['reasons']) or 'all figures within thresholds'}); "
          f"{engine.stats.summary()}")



if __name__ == "__main__":
    main()
