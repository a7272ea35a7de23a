"""label: score every record with the oracle: dimension scores, weighted score, tier.

Refuses to run when validate said FAIL, unless label.proceed_on_fail is true. Records that arrive with
`labels` (from another tool or an earlier run) keep them unless label.relabel is true. A record the
oracle could not label goes to failures.jsonl with its reason; it is counted, never dropped silently.
Every label is journaled as it arrives, so a killed run resumes; label.budget_usd stops a run cleanly
(exit code 3) before the call that would pass it. --dry-run prints the calls, tokens and cost this run
would spend (journal and cache hits counted) and calls nothing.

    python stages/label.py --corpus data/regenerated/corpus.jsonl --gate metrics/validate.json \
        --prompt prompts/oracle.md --labeled data/labeled/labeled.jsonl \
        --failures data/labeled/failures.jsonl --metrics metrics/label.json
"""
import argparse
import json
from collections import Counter
from pathlib import Path

from distillery.cache import Journal
from distillery.llm import BudgetExceeded, Engine
from distillery.oracle import OraclePrompt, annotate, label_all, plan_labels, validate_scores
from distillery.params import BaseParams, FilterParams, LabelParams, load_section, seed_everything
from distillery.records import load_records, write_json, write_records

RAW_CORPUS = Path("data/raw/corpus.jsonl")  # a dry run before regenerate has run estimates from the raw corpus


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "gate", "prompt", "labeled", "failures", "metrics"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print the plan (calls, tokens, cost); call nothing")
    args = ap.parse_args()

    base = load_section(args.params, "base", BaseParams)
    filt = load_section(args.params, "filter", FilterParams)
    cfg = load_section(args.params, "label", LabelParams)
    seed_everything(base.seed)

    gate = json.loads(args.gate.read_text()) if args.gate.exists() or not args.dry_run else {"verdict": "unknown"}
    if gate["verdict"] == "FAIL" and not cfg.proceed_on_fail and not args.dry_run:
        raise SystemExit(f"label: refusing to label: validation verdict is FAIL ({'; '.join(gate['reasons'])}). "
                         "Fix prompts/oracle.md and rerun, or set label.proceed_on_fail: true in params.yaml.")
    if gate["verdict"] != "PASS" and not args.dry_run:
        print(f"label: WARNING: validation verdict is {gate['verdict']}; labeling anyway")

    corpus = args.corpus if args.corpus.exists() or not args.dry_run else RAW_CORPUS
    records = load_records(corpus)
    kept, todo = [], []
    for r in records:
        if "labels" in r and not cfg.relabel:
            # Existing labels are checked against the filter, then scored and tiered like fresh ones.
            labels = validate_scores(r["labels"], filt)
            kept.append(annotate(r, labels, filt, r.get("oracle") or {"provider": "existing"}))
        else:
            todo.append(r)
    engine = Engine.for_stage(base.oracle, base, max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    journal = Journal(Path(base.state_dir) / "journal" / "label.jsonl")
    prompt = OraclePrompt(args.prompt)
    if args.dry_run:
        plan = plan_labels(todo, engine, prompt, filt, journal=journal)
        print("PLAN " + json.dumps({"stage": "label", "corpus": str(corpus),
                                    "kept_existing_labels": len(kept), "validation_verdict": gate["verdict"],
                                    "budget_usd": cfg.budget_usd, **plan}))
        return
    try:
        labeled, failures = label_all(todo, engine, prompt, filt, journal=journal, parse_retries=cfg.parse_retries)
    except BudgetExceeded as exc:
        print(f"label: stopped: {exc}. Spent ${engine.stats.cost_usd:.4f} in {engine.stats.calls} calls. "
              "Every label so far is journaled: raise label.budget_usd, or run again to spend another budget.")
        raise SystemExit(3) from None

    by_id = {r["id"]: r for r in kept + labeled}
    ordered = [by_id[r["id"]] for r in records if r["id"] in by_id]  # corpus order, whatever the source
    write_records(args.labeled, ordered)
    write_records(args.failures, failures)
    write_json(args.metrics, {
        "records": len(records), "labeled": len(ordered), "kept_existing_labels": len(kept),
        "newly_labeled": len(labeled), "failures": len(failures),
        "failure_reasons": dict(Counter(f["stage_reason"] for f in failures)),
        "tiers": dict(sorted(Counter(r["tier"] for r in ordered).items())),
        "mean_score": round(sum(r["score"] for r in ordered) / max(1, len(ordered)), 4),
        "validation_verdict": gate["verdict"], **engine.stats.as_metrics()})
    print(f"label: {len(ordered)} labeled ({len(kept)} kept), {len(failures)} failures, "
          f"{engine.stats.calls} model calls, {engine.stats.cache_hits} cache hits, ${engine.stats.cost_usd:.4f}")


if __name__ == "__main__":
    main()
