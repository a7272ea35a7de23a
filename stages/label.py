"""label: score every record with the oracle: dimension scores, weighted score, tier.

Refuses to run when validate said FAIL, unless label.proceed_on_fail is true. Records that arrive with
`labels` (from another tool or an earlier run) keep them unless label.relabel is true; a bad existing
label stops the stage with every bad record's file, line and id. A record the oracle could not label
goes to failures.jsonl with its reason; it is counted, never dropped silently. Every label is
journaled as it arrives, so a killed run resumes; label.budget_usd stops a run cleanly (exit code 3)
before the call that would pass it. --dry-run prints the calls, tokens and cost this run would spend
(journal and cache hits counted) and calls nothing.

    python stages/label.py --corpus data/regenerated/corpus.jsonl --gate metrics/validate.json \
        --prompt prompts/oracle.md --labeled data/labeled/labeled.jsonl \
        --failures data/labeled/failures.jsonl --metrics metrics/label.json [--fallback-corpus data/raw/corpus.jsonl]
"""
import argparse
import json
from collections import Counter
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.engine import Engine
from distillery.engine.job import JobRunner, add_dry_run, check_failures, fresh, planned_corpus, print_plan, run_job
from distillery.engine.journal import Journal
from distillery.labeling.oracle import OracleJob, OraclePrompt, keep_existing_labels
from distillery.params import load_params, seed_everything
from distillery.records import load_numbered, write_records
from distillery.reports import write_metrics


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "gate", "prompt", "labeled", "failures", "metrics", "details"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt, cfg = params.base, params.filter, params.label
    seed_everything(base.seed)

    known = (lambda path: fresh(path)) if args.dry_run else (lambda path: True)  # a dry run skips stale inputs
    gate = json.loads(args.gate.read_text()) if known(args.gate) else {"verdict": "unknown"}
    if gate["verdict"] == "FAIL" and not cfg.proceed_on_fail and not args.dry_run:
        raise SystemExit(f"label: refusing to label: validation verdict is FAIL ({'; '.join(gate['reasons'])}). "
                         "Fix prompts/oracle.md and rerun, or set label.proceed_on_fail: true in params.yaml.")
    if gate["verdict"] == "SKIPPED" and not args.dry_run:
        print("label: WARNING: the oracle was not checked (calibrate.skip: true); labeling anyway")
    elif gate["verdict"] != "PASS" and not args.dry_run:
        print(f"label: WARNING: validation verdict is {gate['verdict']}; labeling anyway")

    corpus, fallback = planned_corpus(args)
    numbered = load_numbered(corpus)
    records = [r for _, r in numbered]
    kept, todo = keep_existing_labels(numbered, filt, corpus, relabel=cfg.relabel)
    engine = Engine.for_stage(base.oracle, base, "label", batch=cfg.batch,
                              max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    job = OracleJob(OraclePrompt(args.prompt), filt, engine, parse_retries=cfg.parse_retries)
    runner = JobRunner(job, engine, Journal(Path(base.state_dir) / "journal" / "label.jsonl"))
    if args.dry_run:
        print_plan("label", runner.plan(todo), corpus=str(corpus), estimated_from_fallback=fallback,
                   kept_existing_labels=len(kept), validation_verdict=gate["verdict"], budget_usd=cfg.budget_usd)
        return
    labeled, failures = run_job(runner, todo, "label.budget_usd").in_order(todo)

    by_id = {r["id"]: r for r in kept + labeled}
    ordered = [by_id[r["id"]] for r in records if r["id"] in by_id]  # corpus order, whatever the source
    write_records(args.labeled, ordered)
    write_records(args.failures, [f.to_record() for f in failures])
    write_metrics("label", args.metrics, args.details, {
        "records": len(records), "labeled": len(ordered), "kept_existing_labels": len(kept),
        "newly_labeled": len(labeled), "failures": len(failures),
        "failure_reasons": dict(Counter(f.reason for f in failures)),
        "tiers": dict(sorted(Counter(r["tier"] for r in ordered).items())),
        "mean_score": round(sum(r["score"] for r in ordered) / max(1, len(ordered)), 4),
        "validation_verdict": gate["verdict"], **engine.stats.as_metrics()})
    print(f"label: {len(ordered)} labeled ({len(kept)} kept from the corpus), {len(failures)} failures; "
          f"{engine.stats.summary()}")
    check_failures("label", len(failures), len(todo), cfg.max_failure_rate, args.failures)


if __name__ == "__main__":
    main()
