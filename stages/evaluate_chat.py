"""evaluate_chat: did the chat student get better? On held-out test conversations, its final answers beside
its base model's and the reference's: a pairwise judge in both orders (win rates, flip rate, LC win rate,
Bradley–Terry strengths with bootstrap intervals), trait scores on the filter's dimensions, template and
diversity figures, tool-call validity, and a DEPLOY / REVIEW / FAIL verdict.

    python stages/evaluate_chat.py --splits data/splits --tools data/raw/tools.json --model-dir models/chat \
        --patterns data/templates/patterns.json --judge-prompt prompts/judge.md --oracle-prompt prompts/oracle.md \
        --answers data/chat_eval/answers.jsonl --comparisons data/chat_eval/comparisons.jsonl \
        --failures data/chat_eval/failures.jsonl --report reports/chat_evaluation.md \
        --metrics metrics/evaluate_chat.json --details reports/details/evaluate_chat.json \
        --strengths plots/chat_strengths.json --figure reports/figures/chat_strengths.svg \
        [--training-figure reports/figures/chat_training.svg] [--dry-run]

The judge (evaluate_chat.judge, default base.oracle) runs through the engine: cached, journaled (a killed
run resumes), budgeted, and `make plan` counts its calls. The comparisons file is the documented format of
distillery/judging/aggregate.py: `python -m distillery.judging summarize data/chat_eval/comparisons.jsonl`
prints the same table from it, or from comparisons a user brings.
"""
import argparse
import json
import os
from collections import Counter
from pathlib import Path

from distillery.console import quiet_libraries
from distillery.engine.engine import Engine
from distillery.engine.job import (JobRunner, add_dry_run, check_failures, fresh, merge_plans, print_plan,
                                   run_job)
from distillery.engine.journal import Journal
from distillery.evaluation.chat import (PAIRS, SYSTEMS, chat_verdict, final_items, generate_system_answers,
                                        hosted_answers, pair_row, style_figures, tool_call_validity, tool_items, trait_means,
                                        trait_records)
from distillery.generation.tools import declarations, load_tools
from distillery.judging.aggregate import summarize
from distillery.judging.judge import JudgeJob, JudgePrompt, comparisons, identical, judgements
from distillery.labeling.oracle import OracleJob, OraclePrompt
from distillery.params import load_params, seed_everything
from distillery.plots import fill, write_svg
from distillery.records import require_records, write_json, write_records, write_text
from distillery.reports import chat_evaluation_report, write_metrics
from distillery.training.sft import META_FILE, chat_examples

PATHS = {"splits": "split's folder (test.jsonl)", "model_dir": "train_chat's adapter folder",
         "patterns": "detect_templates' patterns (the training set's templates)",
         "judge_prompt": "the pairwise judge's prompt", "oracle_prompt": "the oracle's prompt (trait scores)",
         "answers": "every system's answer per test conversation (JSONL)",
         "comparisons": "the judge's comparisons (JSONL, judging/aggregate.py's format)",
         "failures": "judgements and trait scores that failed, with their reasons",
         "report": "the markdown report", "metrics": "headline metrics (DVC)", "details": "every figure",
         "strengths": "Bradley–Terry strengths with intervals, for `dvc plots`", "figure": "the strengths as SVG"}
STRENGTHS_TEMPLATE = Path(".dvc/plots/strengths_interval.json")


def main():
    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, text in PATHS.items():
        ap.add_argument(f"--{name.replace('_', '-')}", dest=name, required=True, type=Path, help=text)
    ap.add_argument("--tools", type=Path, help="tool declarations for conversations that call tools without them")
    ap.add_argument("--training-figure", type=Path, help="train_chat's loss curves (SVG), embedded in the report")
    ap.add_argument("--params", default="params.yaml", type=Path)
    add_dry_run(ap)
    args = ap.parse_args()

    params = load_params(args.params)
    base, filt, cfg = params.base, params.filter, params.evaluate_chat
    seed_everything(base.seed)
    judge_spec = cfg.judge or base.oracle
    engine = Engine.for_stage(judge_spec, base, "evaluate_chat", batch=cfg.batch,
                              max_retries=cfg.max_retries, budget_usd=cfg.budget_usd)
    rubric = "\n".join(f"- {name}: {d.description}" for name, d in filt.dimensions.items())
    judge = JudgeJob(JudgePrompt(args.judge_prompt), rubric, engine, tie_margin=cfg.tie_margin,
                     parse_retries=cfg.parse_retries)
    nothing = lambda note: print_plan("evaluate_chat", JobRunner(judge, engine).plan([]), note=note)  # noqa: E731
    meta_file = args.model_dir / META_FILE
    trained = fresh(meta_file) if args.dry_run else meta_file.exists()
    if not params.train_chat.enabled or (trained and json.loads(meta_file.read_text()).get("kind") == "disabled"):
        if args.dry_run:
            return nothing("train_chat.enabled is false: nothing to judge")
        skip(args)
        return

    tools = declarations(load_tools(args.tools)) if args.tools and args.tools.exists() else None
    test_path = args.splits / "test.jsonl"
    if args.dry_run and not fresh(test_path):
        return nothing("the test split does not exist yet: the judge's calls are planned once split has run")
    test = chat_examples(require_records(test_path, stage="evaluate_chat", producer="split"), tools)
    if cfg.max_examples:
        test = test[:cfg.max_examples]
    if not test:
        raise SystemExit(f"evaluate_chat: {test_path} has no conversation that ends with an assistant's answer")
    finals = final_items(test, judge_spec.context_chars)
    prompts = tool_items(test)
    meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
    answer_calls = None
    if args.dry_run:  # the answers are not generated yet: the references stand in for their length
        answers = {s: {"final": [i["reference"] for i in finals], "tool": []} for s in ("student", "base")}
    elif meta.get("kind") == "hosted":  # the vendor serves both: through the engine, cached and budgeted
        answers, answer_calls = hosted_answers(meta, finals, prompts, cfg.max_new_tokens, base, cfg.max_retries,
                                               cfg.budget_usd)
    else:
        answers = generate_system_answers(args.model_dir, finals, prompts, cfg.max_new_tokens, cfg.batch_size)
    by_system = {"student": answers["student"]["final"], "base": answers["base"]["final"],
                 "reference": [i["reference"] for i in finals]}
    items = [{"id": i["id"], "context": i["context"], "answers": {s: by_system[s][k] for s in SYSTEMS}}
             for k, i in enumerate(finals)]

    state = Path(base.state_dir) / "journal"
    judge_runner = JobRunner(judge, engine, Journal(state / "evaluate_chat.judge.jsonl"))
    pairs = judgements(items, PAIRS)
    todo = [j for j in pairs if j["first"] != j["second"]]  # identical answers are a tie, asked of no one
    traits_todo = trait_records(finals, by_system) if cfg.traits else []
    traits_runner = JobRunner(OracleJob(OraclePrompt(args.oracle_prompt), filt, engine, parse_retries=cfg.parse_retries,
                                        name="traits"), engine, Journal(state / "evaluate_chat.traits.jsonl"))
    if args.dry_run:
        print_plan("evaluate_chat", merge_plans(judge_runner.plan(todo), traits_runner.plan(traits_todo)),
                   test_conversations=len(finals), judgements=len(pairs), trait_scores=len(traits_todo),
                   estimated_from="reference answers standing in for the student's and the base's")
        return

    judged, judge_failures = run_job(judge_runner, todo, "evaluate_chat.budget_usd").in_order(todo)
    judged += [identical(j) for j in pairs if j["first"] == j["second"]]
    scored, trait_failures = run_job(traits_runner, traits_todo, "evaluate_chat.budget_usd").in_order(traits_todo)
    lengths = {(item["id"], s): len(text) for item in items for s, text in item["answers"].items()}
    rows = comparisons(judged, lengths, judge=f"{judge_spec.provider}:{judge_spec.model}")
    write_records(args.comparisons, rows)
    write_records(args.failures, [{**f.to_record(), "part": part} for part, fs in
                                  (("judge", judge_failures), ("traits", trait_failures)) for f in fs])
    write_records(args.answers, [{"id": i["id"], "context": i["context"], **i["answers"]} for i in items])
    if not rows:
        raise SystemExit(f"evaluate_chat: every judgement failed ({len(judge_failures)}; reasons in {args.failures})")
    summary = summarize(args.comparisons, resamples=cfg.bootstrap, seed=base.seed)

    vs_base = pair_row(summary, "student", "base")
    patterns = load_patterns(args.patterns)
    style = {s: style_figures(by_system[s], patterns, params.diversity) for s in SYSTEMS}
    tool_use = ({s: tool_call_validity(answers[s]["tool"], prompts) for s in ("student", "base")} if prompts else None)
    verdict, reasons = chat_verdict(vs_base, summary["order"]["flip_rate"], style["student"],
                                    tool_use["student"] if tool_use else None, cfg.thresholds)
    strengths = summary["bradley_terry"]["strengths"]
    points = [{"system": s, "strength": round(v["strength"], 4), "ci_low": round(v.get("ci", [v["strength"]] * 2)[0], 4),
               "ci_high": round(v.get("ci", [v["strength"]] * 2)[1], 4)} for s, v in strengths.items()]
    write_json(args.strengths, points)
    title = "Bradley–Terry strength (log-odds) with 95% bootstrap intervals"
    write_svg(args.figure, fill(json.loads(STRENGTHS_TEMPLATE.read_text()), data=points, x="strength", y="system",
                                x_label="strength (log-odds)", y_label="system", title=title))
    figures = {
        "verdict": verdict, "reasons": reasons, "test_conversations": len(finals),
        "student_vs_base": vs_base, "student_vs_reference": pair_row(summary, "student", "reference"),
        "base_vs_reference": pair_row(summary, "base", "reference"),
        "win_rate_vs_base": vs_base["win_rate"] if vs_base else None,
        "lc_win_rate_vs_base": vs_base.get("lc_win_rate") if vs_base else None,
        "flip_rate": summary["order"]["flip_rate"], "order": summary["order"],
        "strengths": {p["system"]: p["strength"] for p in points}, "bradley_terry": summary["bradley_terry"],
        "template_rate": {s: style[s]["template_rate"] for s in SYSTEMS}, "style": style,
        "traits": trait_means(scored, list(filt.dimensions)), "tool_calls": tool_use,
        "valid_tool_calls": tool_use["student"]["valid_rate"] if tool_use else None,
        "judgements": len(pairs), "identical_answers": len(pairs) - len(todo),
        "judge_failures": len(judge_failures), "trait_failures": len(trait_failures),
        "failure_reasons": dict(Counter(f.reason for f in judge_failures + trait_failures)),
        "judge": f"{judge_spec.provider}:{judge_spec.model}", **engine.stats.as_metrics(),
        **({"answer_calls": answer_calls} if answer_calls else {})}
    examples = [{"id": i["id"], "context": i["context"], **i["answers"]} for i in items[:4]]
    training = [os.path.relpath(f, args.report.parent) for f in (args.training_figure, args.figure) if f and f.exists()]
    write_text(args.report, chat_evaluation_report(figures, examples, training, args.comparisons))
    write_metrics("evaluate_chat", args.metrics, args.details, figures)
    lc = figures["lc_win_rate_vs_base"]
    print(f"evaluate_chat: {verdict}, student vs base win rate {figures['win_rate_vs_base']:.1%}"
          + (f" (LC {lc:.1%})" if lc is not None else "") + f", flip rate {figures['flip_rate'] or 0:.0%}, "
          f"template rate student {style['student']['template_rate']:.0%} / base {style['base']['template_rate']:.0%} / "
          f"reference {style['reference']['template_rate']:.0%}; {engine.stats.summary()}")
    total = len(todo) + len(traits_todo)
    check_failures("evaluate_chat", len(judge_failures) + len(trait_failures), total, cfg.max_failure_rate,
                   args.failures)


def load_patterns(path: Path) -> list[dict]:
    return json.loads(path.read_text()) if path.exists() else []


def skip(args) -> None:
    """train_chat is off: every out is written, saying so."""
    for path in (args.answers, args.comparisons, args.failures):
        write_records(path, [])
    write_json(args.strengths, [])
    write_svg(args.figure, fill(json.loads(STRENGTHS_TEMPLATE.read_text()), data=[], x="strength", y="system",
                                title="Chat student not trained (train_chat.enabled: false)"))
    write_text(args.report, "# Chat student evaluation\n\nSkipped: `train_chat.enabled` is false in params.yaml.\n")
    write_metrics("evaluate_chat", args.metrics, args.details, {"verdict": "SKIPPED"})
    print("evaluate_chat: skipped (train_chat.enabled: false)")


if __name__ == "__main__":
    main()
