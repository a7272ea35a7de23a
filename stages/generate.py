"""generate: synthetic tool-using conversations over a planned parameter space, the tools really run.

Plans scenarios to cover generate.axes (all pairs, chosen combinations, a minimum per bucket, then each
axis's target frequencies), writes a brief for several scenarios per call, then plays each conversation:
a simulated user asks, the assistant answers or calls tools, executed against a fresh copy of the
database, until a final answer. Duplicates, near-duplicates and templated answers are rejected. The
output is the corpus the rest of the pipeline reads: your own records, then the accepted conversations.

    python stages/generate.py --corpus data/raw/corpus.jsonl --tools data/raw/tools.json \
        --database data/raw/world.sql --brief-prompt prompts/generate_brief.md \
        --opening-prompt prompts/generate_opening.md --document-prompt prompts/generate_document.md \
        --assistant-prompt prompts/generate_assistant.md --user-prompt prompts/generate_user.md \
        --out data/generated/corpus.jsonl --plan data/generated/plan.json \
        --failures data/generated/failures.jsonl --metrics metrics/generate.json \
        --details reports/details/generate.json [--plan-only | --dry-run]
"""
import argparse
import hashlib
from collections import Counter
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.cache import content_key
from distillery.engine.engine import Engine
from distillery.engine.job import add_dry_run, check_failures, print_plan
from distillery.engine.journal import Journal
from distillery.engine.requests import BudgetExceeded
from distillery.generation.conversation import (Gate, Prompt, brief_requests, generate_conversations, worst_case_steps,
                                              write_briefs)
from distillery.generation.planner import Space, coverage_report, plan
from distillery.generation.tools import Database, ToolsFileError, declarations, load_tools
from distillery.params import TemplateParams, load_params, seed_everything
from distillery.records import load_records, write_json, write_records
from distillery.reports import write_metrics
from distillery.text.diversity import diversity_metrics
from distillery.text.templates import build_patterns

HELP = {
    "corpus": "your own corpus: the output is it plus the accepted conversations",
    "tools": "tool declarations (OpenAI format) with the SQL of each",
    "database": "a .sql script or SQLite file",
    "brief_prompt": "prompt that writes scenario briefs (per_call > 1)",
    "opening_prompt": "prompt that writes one scenario's opening message (per_call 1)",
    "document_prompt": "prompt that writes the user's document (mode: document)",
    "assistant_prompt": "the assistant's system message",
    "user_prompt": "the simulated user's prompt",
    "out": "the corpus the pipeline uses: yours, then the accepted conversations",
    "plan": "the scenario plan and its coverage report",
    "failures": "scenarios with no accepted conversation",
    "metrics": "headline metrics (DVC)",
    "details": "every figure",
}
NOTHING = {"provider": "-", "records": 0, "journal_hits": 0, "cache_hits": 0, "calls": 0, "input_tokens": 0,
           "output_tokens_max": 0, "cost_usd_max": 0.0, "priced": True, "setup_problems": []}


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in HELP.items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=text)
    ap.add_argument("--plan-only", action="store_true", help="write the plan and its coverage report; call nothing")
    ap.add_argument("--params", default="params.yaml", type=Path)
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    base, cfg = params.base, params.generate
    seed_everything(base.seed)
    own = load_records(args.corpus)
    if not cfg.axes and args.dry_run:
        print_plan("generate", NOTHING)
        return
    if not cfg.axes:
        write_records(args.out, own)
        write_records(args.failures, [])
        write_json(args.plan, {"rows": [], "report": {"scenarios": 0}})
        write_metrics("generate", args.metrics, args.details, {"scenarios": 0, "accepted": 0})
        print(f"generate: off (generate.axes is empty): the corpus is your own {len(own)} records")
        return
    if cfg.mode not in ("conversation", "document"):
        raise SystemExit(f"generate: mode: expected conversation or document, got {cfg.mode!r}")
    if cfg.tool_choice not in ("auto", "required"):
        raise SystemExit(f"generate: tool_choice: expected auto or required, got {cfg.tool_choice!r}")
    try:
        space = Space.from_params(cfg.axes, cfg.min_per_bucket, cfg.pairwise, [tuple(g) for g in cfg.combine])
        planned = plan(space, cfg.scenarios, cfg.seed)
        tools = load_tools(args.tools) if cfg.mode == "conversation" else {}  # a document is answered, not looked up
    except (ValueError, ToolsFileError) as exc:
        raise SystemExit(f"generate: {exc}") from None
    write_json(args.plan, {"rows": planned.rows, "report": planned.report})
    if args.plan_only:
        r = planned.report
        print(f"generate: planned {r['scenarios']} scenarios ({r['needed_for_coverage']} for coverage, lower bound "
              f"{r['lower_bound']}) in {args.plan}; nothing called")
        return

    assistant_spec, user_spec = cfg.assistant or base.generator, cfg.user or base.generator
    kw = dict(max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    assistant = Engine.for_stage(assistant_spec, base, "generate", **kw)
    user = assistant if user_spec == assistant_spec else Engine.for_stage(user_spec, base, "generate", **kw)
    prompts = {name: Prompt(getattr(args, f"{name}_prompt")) for name in ("brief", "opening", "document", "assistant", "user")}
    world = {"tools": _digest(args.tools), "database": _digest(args.database), "prompts": [p.template for p in prompts.values()],
             "assistant": assistant_spec.identity(), "user": user_spec.identity(),
             "cfg": [cfg.mode, cfg.temperature, cfg.max_tokens, cfg.document_tokens, cfg.turns, cfg.max_tool_rounds,
                     cfg.per_call, cfg.tool_choice]}
    brief_key = lambda row: content_key(kind="brief", row=row, **world)  # noqa: E731
    conversation_key = lambda row: content_key(kind="conversation", row=row, **world)  # noqa: E731
    journal = Journal(Path(base.state_dir) / "journal" / "generate.jsonl")
    if args.dry_run:
        done = journal.load()
        todo = [r for r in planned.rows if conversation_key(r) not in done]
        print_plan("generate", {**estimate(todo, cfg, assistant, prompts, tools), "records": len(planned.rows),
                                "journal_hits": len(planned.rows) - len(todo)})
        return

    try:
        briefs, brief_failures, counts = write_briefs(planned.rows, user, prompts, tools, cfg, brief_key,
                                                      journal)
        gate = Gate(build_patterns([], TemplateParams(**{**vars(params.detect_templates), "mine": False})),
                    params.diversity)
        records, failures, more = generate_conversations(planned.rows, briefs, conversation_key, assistant, user,
                                                         tools, Database(args.database), prompts, cfg, gate, journal)
    except BudgetExceeded as exc:
        raise SystemExit(f"generate: stopped: {exc}. What is done is journaled; raise generate.budget_usd to go on.")
    counts.update(more)
    assistant.stats.journal_hits += counts["journal_hits"]
    failures = brief_failures + failures
    clash = {r["id"] for r in own} & {r["id"] for r in records}
    if clash:
        raise SystemExit(f"generate: {args.corpus} already has ids {sorted(clash)[:5]}: generated ids are gen-scn-…")
    write_records(args.out, own + records)
    write_records(args.failures, failures)
    accepted_rows = [r["generation"]["scenario"] for r in records]
    answers = [m["content"] for r in records for m in r["messages"] if m["role"] == "assistant" and m.get("content")]
    stats = assistant.stats.as_metrics() if user is assistant else _merged(assistant.stats, user.stats)
    tool_calls = sum(r["generation"]["tool_calls"] for r in records)
    tool_errors = Counter(k for r in records for k, n in r["generation"]["tool_errors"].items() for _ in range(n))
    write_metrics("generate", args.metrics, args.details, {
        "scenarios": len(planned.rows), "accepted": len(records), "failed": len(failures),
        "accepted_rate": round(len(records) / max(1, len(planned.rows)), 4),
        "coverage_planned": planned.report, "coverage_accepted": coverage_report(space, accepted_rows),
        "pairs_covered_accepted": _pairs(coverage_report(space, accepted_rows)),
        "this_run": dict(sorted(counts.items())), "diversity": diversity_metrics(answers, params.diversity),
        "tool_calls": tool_calls, "tool_errors": dict(tool_errors),
        "with_tool_calls": sum(r["generation"]["tool_calls"] > 0 for r in records),
        "calls_per_accepted": round(stats["calls"] / max(1, len(records)), 3), **stats})
    print(f"generate: {len(records)} of {len(planned.rows)} scenarios accepted, {tool_calls} tool calls in them "
          f"({sum(tool_errors.values())} tool errors); {assistant.stats.summary()}")
    lost = [f for f in failures if f["reason"] == "call_failed"]  # rejections are results, not failures
    check_failures("generate", len(lost), len(planned.rows), cfg.max_failure_rate, args.failures)


def estimate(rows: list[dict], cfg, engine, prompts: dict, tools) -> dict:
    """An upper bound before paying: the real brief prompts, then each conversation's steps with its history
    growing as it would at worst (conversation.worst_case_steps), all at max_attempts."""
    groups = [rows[i:i + cfg.per_call] for i in range(0, len(rows), cfg.per_call)]
    est = engine.estimate(brief_requests(groups, prompts, tools, cfg, 0))
    step = engine.budget.estimate(engine.members[0], worst_case_steps(cfg, prompts, declarations(tools)) * len(rows))
    plan = {k: est[k] + step[k] for k in ("calls", "input_tokens", "output_tokens_max", "cost_usd_max")}
    return {**est, **plan, "records": len(rows), "journal_hits": 0, "calls_max": plan["calls"] * cfg.max_attempts,
            "output_tokens_max": plan["output_tokens_max"] * cfg.max_attempts,
            "cost_usd_max": round(plan["cost_usd_max"] * cfg.max_attempts, 4), "setup_problems": engine.setup_problems()}


def _pairs(report: dict) -> float:
    pairs = report.get("pairwise") or {}
    return round(pairs.get("covered", 0) / max(1, pairs.get("total", 0)), 4) if pairs else 1.0


def _merged(a, b) -> dict:
    """Two engines' accounting as one (the assistant's and the simulated user's, when they differ)."""
    one, two = a.as_metrics(), b.as_metrics()
    merged = {k: one[k] + two[k] if isinstance(one[k], (int, float)) else one[k] for k in one}
    merged["by_provider"] = {**one["by_provider"], **two["by_provider"]}
    merged["unpriced_models"] = sorted(set(one["unpriced_models"]) | set(two["unpriced_models"]))
    merged["notices"] = sorted(set(one["notices"]) | set(two["notices"]))
    return merged


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


if __name__ == "__main__":
    main()
