"""regenerate: rewrite the final answer of each flagged record with the generator LLM, in the persona's
style and avoiding the template spans; tool calls and tool results are never touched. Each result is
journaled as it arrives, so a killed run resumes where it stopped.

    python stages/regenerate.py --corpus data/raw/corpus.jsonl --flagged data/templates/flagged.jsonl \
        --patterns data/templates/patterns.json --style data/raw/style.jsonl \
        --prompt prompts/regenerate.md --out data/regenerated/corpus.jsonl --metrics metrics/regenerate.json
"""
import argparse
import json
from collections import Counter, defaultdict
from pathlib import Path

from distillery.cache import Journal
from distillery.diversity import diversity_metrics
from distillery.llm import BudgetExceeded, Engine
from distillery.params import BaseParams, DiversityParams, RegenerateParams, load_section, seed_everything
from distillery.records import load_records, read_jsonl, subject_text, write_json, write_records
from distillery.regeneration import RegeneratePrompt, plan_rewrites, regenerate_all
from distillery.templates import match_patterns, template_rate


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("corpus", "flagged", "patterns", "style", "prompt", "out", "metrics"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--params", default="params.yaml", type=Path)
    ap.add_argument("--dry-run", action="store_true", help="print the plan (calls, tokens, cost); call nothing")
    args = ap.parse_args()

    base = load_section(args.params, "base", BaseParams)
    cfg = load_section(args.params, "regenerate", RegenerateParams)
    div = load_section(args.params, "diversity", DiversityParams)
    seed_everything(base.seed)

    records = load_records(args.corpus)
    if args.dry_run and not args.flagged.exists():  # detect_templates has not run: at most every record
        flagged = {r["id"]: [] for r in records}
    else:
        flagged = {r["id"]: r["patterns"] for _, r in read_jsonl(args.flagged)}
    patterns = [p for p in json.loads(args.patterns.read_text()) if p["count"]] if args.patterns.exists() else []
    style = defaultdict(list)
    for _, example in read_jsonl(args.style):
        style[example["persona"]].append(example["text"])

    engine = Engine.for_stage(base.generator, base, max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    journal = Journal(Path(base.state_dir) / "journal" / "regenerate.jsonl")
    prompt = RegeneratePrompt(args.prompt)
    if args.dry_run:
        plan = plan_rewrites(records, flagged, patterns, style, engine, prompt, cfg, base.seed, journal=journal)
        print("PLAN " + json.dumps({"stage": "regenerate", "flagged_known": args.flagged.exists(),
                                    "budget_usd": cfg.budget_usd, **plan}))
        return
    try:
        out = regenerate_all(records, flagged, patterns, style, engine, prompt, cfg, base.seed,
                             journal=journal, div=div)
    except BudgetExceeded as exc:
        print(f"regenerate: stopped: {exc}. Spent ${engine.stats.cost_usd:.4f} in {engine.stats.calls} calls. "
              "Every rewrite so far is journaled: raise regenerate.budget_usd, or run again to spend another budget.")
        raise SystemExit(3) from None
    write_records(args.out, out)

    before = [subject_text(r) for r in records]
    after = [subject_text(r) for r in out]
    kept = Counter(r["regenerated"]["kept_original"].split(":")[0] for r in out
                   if "kept_original" in r.get("regenerated", {}))
    rewritten = sum("regenerated" in r and "kept_original" not in r["regenerated"] for r in out)
    write_json(args.metrics, {
        "flagged": len(flagged), "rewritten": rewritten, "kept_original": sum(kept.values()),
        "kept_original_reasons": dict(kept),
        "failure_rate": round(sum(kept.values()) / max(1, len(flagged)), 4),
        "template_rate_before": template_rate(match_patterns(before, patterns)),
        "template_rate_after": template_rate(match_patterns(after, patterns)),
        "before": diversity_metrics(before, div), "after": diversity_metrics(after, div),
        "temperature": cfg.temperature, **engine.stats.as_metrics()})
    print(f"regenerate: {rewritten}/{len(flagged)} rewritten, {engine.stats.calls} model calls, "
          f"{engine.stats.cache_hits} cache hits")


if __name__ == "__main__":
    main()
