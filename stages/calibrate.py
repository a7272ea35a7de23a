"""calibrate: try the oracle prompt on a small stratified sample before labeling the corpus.

Reads the corpus (records with `expect` hints) and prompts/oracle.md; writes the sample, its labels,
the calls that failed, a markdown report and metrics with a PASS / REVIEW / FAIL verdict.

    python stages/calibrate.py --corpus data/raw/corpus.jsonl --prompt prompts/oracle.md \
        --sample data/calibration/sample.jsonl --labeled data/calibration/labeled.jsonl \
        --failures data/calibration/failures.jsonl --report reports/calibration.md --metrics metrics/calibrate.json
"""
import argparse
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.engine import Engine
from distillery.engine.job import JobRunner, add_dry_run, planned_corpus, print_plan, run_job
from distillery.labeling.calibration import assess, stratified_sample, with_expect_from_labels, write_skipped
from distillery.labeling.oracle import OracleJob, OraclePrompt
from distillery.params import load_params, seed_everything
from distillery.records import load_records, write_records
from distillery.reports import write_metrics


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "prompt", "sample", "labeled", "failures", "report", "metrics", "details"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    cfg = params.calibrate
    seed_everything(params.base.seed)

    if cfg.skip and not args.dry_run:
        write_skipped("calibrate", "Oracle calibration", sample=args.sample, labeled=args.labeled,
                      failures=args.failures, report=args.report, metrics=args.metrics, details=args.details)
        print("calibrate: SKIPPED (calibrate.skip)")
        return
    path, fallback = planned_corpus(args)
    corpus = with_expect_from_labels(load_records(path), params.filter)
    try:
        sample = [] if cfg.skip else stratified_sample(corpus, cfg, section="calibrate")
    except ValueError as exc:  # too few records of a kind for the sample asked for: a setting, not a bug
        raise SystemExit(f"calibrate: {exc}") from None
    engine = Engine.for_stage(params.base.oracle, params.base, "calibrate")
    runner = JobRunner(OracleJob(OraclePrompt(args.prompt), params.filter, engine, name="calibrate"), engine)
    if args.dry_run:
        print_plan("calibrate", runner.plan(sample), corpus=str(path), estimated_from_fallback=fallback)
        return
    labeled, failures = run_job(runner, sample).in_order(sample)
    failures = [f.to_record() for f in failures]
    metrics, report = assess("Oracle calibration", sample, labeled, failures, params.filter, cfg.thresholds)

    write_records(args.sample, sample)
    write_records(args.labeled, labeled)
    write_records(args.failures, failures)
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(report, encoding="utf-8")
    write_metrics("calibrate", args.metrics, args.details, {**metrics, **engine.stats.as_metrics()})
    print(f"calibrate: {metrics['verdict']} ({'; '.join(metrics['reasons']) or 'all figures within thresholds'}); "
          f"{engine.stats.summary()}")



if __name__ == "__main__":
    main()
