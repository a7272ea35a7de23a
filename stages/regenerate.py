"""regenerate: rewrite the final answer of each flagged record with the generator LLM, in the persona's
style and avoiding the template spans; tool calls and tool results are never touched. Each result is
journaled as it arrives, so a killed run resumes where it stopped; regenerate.budget_usd stops a run
cleanly (exit code 3). --dry-run prints the calls, tokens and cost this run would spend.

    python stages/regenerate.py --corpus data/raw/corpus.jsonl --flagged data/templates/flagged.jsonl \
        --patterns data/templates/patterns.json --style data/raw/style.jsonl \
        --prompt prompts/regenerate.md --out data/regenerated/corpus.jsonl --metrics metrics/regenerate.json
"""
import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.engine import Engine
from distillery.engine.job import JobRunner, add_dry_run, check_failures, fresh, planned_corpus, print_plan, run_job
from distillery.engine.journal import Journal
from distillery.params import load_params, seed_everything
from distillery.records import load_records, read_jsonl, subject_text, write_records, write_text
from distillery.regeneration.rewrite import RegenerateJob, RegeneratePrompt, apply_rewrites
from distillery.reports import regenerate_report, write_metrics
from distillery.text.diversity import diversity_metrics
from distillery.text.overrep import answers_containing
from distillery.text.templates import match_patterns, template_rate


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "flagged", "patterns", "style", "prompt", "out", "metrics", "details", "report"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--stock", type=Path, help="detect_templates' details: its over-represented phrases, followed here")
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    base, cfg, div = params.base, params.regenerate, params.diversity
    seed_everything(base.seed)

    path, fallback = planned_corpus(args)
    records = load_records(path)
    flagged_known = fresh(args.flagged) if args.dry_run else True
    if not flagged_known:  # detect_templates has not run (or will run again): at most every record
        flagged = {r["id"]: [] for r in records}
    else:
        flagged = {r["id"]: r["patterns"] for _, r in read_jsonl(args.flagged)}
    patterns = [p for p in json.loads(args.patterns.read_text()) if p["count"]] if flagged_known else []
    style = defaultdict(list)
    for _, example in read_jsonl(args.style):
        style[example["persona"]].append(example["text"])

    engine = Engine.for_stage(base.generator, base, "regenerate", batch=cfg.batch,
                              max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    job = RegenerateJob(flagged, patterns, style, RegeneratePrompt(args.prompt), cfg, base.seed,
                        base.generator.context_chars, div)
    if engine.spec.batch:  # one vendor batch for every flagged answer, not one a wave of batch_size
        job.wave_size = None
    runner = JobRunner(job, engine, Journal(Path(base.state_dir) / "journal" / "regenerate.jsonl"))
    todo = [r for r in records if r["id"] in flagged]
    if args.dry_run:
        print_plan("regenerate", runner.plan(todo), flagged_known=flagged_known, budget_usd=cfg.budget_usd,
                   corpus=str(path), estimated_from_fallback=fallback)
        return
    result = run_job(runner, todo, "regenerate.budget_usd")
    out = apply_rewrites(records, result.values, result.failures)
    write_records(args.out, out)

    before = [subject_text(r) for r in records]
    after = [subject_text(r) for r in out]
    kept = Counter(r["regenerated"]["kept_original"]["reason"] for r in out
                   if "kept_original" in r.get("regenerated", {}))
    rewritten = sum("regenerated" in r and "kept_original" not in r["regenerated"] for r in out)
    rejections = Counter(x["reason"] for r in out for x in r.get("regenerated", {}).get("rejected", []))
    # Over every rewrite the generator wrote (each attempt, cut-off ones aside), not only the accepted ones:
    # with check_facts on, an accepted rewrite keeps its facts by construction.
    facts = Counter()
    for r in out:
        facts.update(r.get("regenerated", {}).get("facts", {}))
    listed = [r["ngram"] for r in json.loads(args.stock.read_text()).get("overrepresented", [])] if args.stock else []
    stock = {g: {"before": b, "after": a} for (g, b), a in
             zip(answers_containing(before, listed).items(), answers_containing(after, listed).values())}
    write_metrics("regenerate", args.metrics, args.details, {
        "flagged": len(flagged), "rewritten": rewritten, "kept_original": sum(kept.values()),
        "kept_original_reasons": dict(kept), "rejections": dict(sorted(rejections.items())),
        "labels_dropped": sum(bool(r.get("regenerated", {}).get("dropped_labels")) for r in out),
        "failure_rate": round(sum(kept.values()) / max(1, len(flagged)), 4),
        "check_facts": cfg.check_facts, "facts_checked": facts["checked"], "inventions": facts["inventions"],
        "facts_kept_rate": round(facts["kept"] / facts["checked"], 4) if facts["checked"] else None,
        "template_rate_before": template_rate(match_patterns(before, patterns)),
        "template_rate_after": template_rate(match_patterns(after, patterns)),
        "before": diversity_metrics(before, div), "after": diversity_metrics(after, div),
        "overrepresented_before_after": stock, "temperature": cfg.temperature, **engine.stats.as_metrics()})
    write_text(args.report, regenerate_report(json.loads(args.details.read_text()), out))
    print(f"regenerate: {rewritten}/{len(flagged)} rewritten, {sum(kept.values())} kept as they were; "
          f"{engine.stats.summary()}")
    check_failures("regenerate", len(result.failures), len(todo), cfg.max_failure_rate, args.metrics)


if __name__ == "__main__":
    main()
