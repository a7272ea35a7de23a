"""Did the chat student get better? Its answers beside its base model's and the reference's, on held-out
test conversations: what to judge, the style figures (templates, diversity), tool-call validity, the
DEPLOY / REVIEW / FAIL verdict and the report. The judging itself is judging/judge.py + judging/aggregate.py.

Systems: "student" (the base with the LoRA adapter), "base" (the same model, adapter disabled) and
"reference" (the final answer in the data). Pairs judged: student vs base, student vs reference, base vs
reference; Bradley–Terry places all three on one scale.
"""
from __future__ import annotations

import dataclasses
from collections import Counter

from distillery.generation.tools import Tool, check_arguments
from distillery.providers import toolproto
from distillery.records import final_assistant_index, render_context, subject_text
from distillery.text.diversity import diversity_metrics
from distillery.text.templates import match_patterns, template_rate
from distillery.text.tokens import words

SYSTEMS = ("student", "base", "reference")
PAIRS = [("student", "base"), ("student", "reference"), ("base", "reference")]


def final_items(conversations: list[dict], context_chars: int) -> list[dict]:
    """One item per test conversation: the context the judge reads and the reference answer."""
    return [{"id": r["id"], "record": r, "context": render_context(r, context_chars), "reference": subject_text(r)}
            for r in conversations]


def tool_items(conversations: list[dict]) -> list[dict]:
    """The conversation up to its first assistant turn that calls a tool, where it declares its tools: the
    student is asked to make that call."""
    out = []
    for r in conversations:
        messages = r["messages"]
        turn = next((i for i, m in enumerate(messages) if m["role"] == "assistant" and m.get("tool_calls")), None)
        if turn is not None and r.get("tools"):
            out.append({"id": r["id"], "messages": messages[:turn], "tools": r["tools"],
                        "expected": [c["function"]["name"] for c in messages[turn]["tool_calls"]]})
    return out


def generate_system_answers(model_dir, finals: list[dict], tool_prompts: list[dict], max_new_tokens: int,
                            batch_size: int) -> dict[str, dict[str, list[str]]]:
    """{"student"|"base": {"final": answers, "tool": replies}}: one load of the model, the base's answers with
    the adapter disabled (the same weights, the same template, the same decoding)."""
    from distillery.training.sft import generate_with, load_chat_student

    tokenizer, model, meta = load_chat_student(model_dir)
    prompts = [i["record"] for i in finals] + [{"messages": i["messages"], "tools": i["tools"]} for i in tool_prompts]
    out = {}
    for system in ("student", "base"):
        if system == "base":
            with model.disable_adapter():
                replies = generate_with(tokenizer, model, prompts, max_new_tokens, batch_size, meta.get("max_length"))
        else:
            replies = generate_with(tokenizer, model, prompts, max_new_tokens, batch_size, meta.get("max_length"))
        # A final answer is text: a tool call written there (the text protocol) is kept as the judge sees it.
        out[system] = {"final": replies[:len(finals)], "tool": replies[len(finals):]}
    return out


def hosted_answers(meta: dict, finals: list[dict], tool_prompts: list[dict], max_new_tokens: int, base,
                   max_retries: int = 2, budget_usd: float | None = None) -> tuple[dict, dict]:
    """A hosted student (train_chat.backend together | openai) and its base, both served by the vendor,
    answering through the engine: cached (a rerun pays nothing), budgeted, failures named. Tool replies
    come back as the text protocol's calls, so tool_call_validity reads them as it reads a local model's.
    Returns the answers in generate_system_answers' shape and the calls' figures."""
    from distillery.engine.engine import Engine
    from distillery.engine.requests import CallFailed, CompleteRequest, ToolTurnRequest
    from distillery.params import ModelSpec
    from distillery.providers.base import SetupError

    def request(messages, tools):
        if tools:
            return ToolTurnRequest(messages, tools, 0.0, max_new_tokens)
        return CompleteRequest(messages, 0.0, max_new_tokens)

    requests = [request(i["record"]["messages"][:-1], i["record"].get("tools")) for i in finals]
    requests += [request(i["messages"], i["tools"]) for i in tool_prompts]
    out, stats = {}, {}
    for system, model in (("student", meta["fine_tuned_model"]), ("base", meta["base_model"])):
        spec = ModelSpec(provider=meta["provider"], model=model, base_url=meta.get("base_url"), temperature=0.0,
                         max_tokens=max_new_tokens)
        try:
            engine = Engine.for_stage(spec, base, "evaluate_chat", max_retries=max_retries, budget_usd=budget_usd)
            replies = engine.run_all(requests)
        except SetupError as exc:  # a key missing or refused, a budget over an unpriced model
            raise SystemExit(f"evaluate_chat: the {system} ({model}): {exc}") from None
        failed = [str(r) for r in replies if isinstance(r, CallFailed)]
        if failed:
            raise SystemExit(f"evaluate_chat: {len(failed)} of {len(requests)} answers of the {system} ({model}) "
                             f"failed, e.g. {failed[0]}; the answers so far are cached: run again")
        texts = [r.text + "".join(toolproto.format_call(c["function"]["name"], c["function"]["arguments"])
                                  for c in r.tool_calls or []) for r in replies]
        out[system] = {"final": texts[:len(finals)], "tool": texts[len(finals):]}
        stats[system] = {"model": model, **{k: v for k, v in engine.stats.as_metrics().items()
                                            if k in ("calls", "cache_hits", "cost_usd", "input_tokens", "output_tokens")}}
    return out, stats


def tool_call_validity(replies: list[str], items: list[dict]) -> dict:
    """The share of replies that call a tool validly: a known tool, arguments that parse and fit its schema."""
    valid, called, errors = 0, 0, Counter()
    for reply, item in zip(replies, items):
        tools = {d["function"]["name"]: Tool(d["function"]["name"], d, "") for d in item["tools"]}
        _, calls = toolproto.parse_reply(reply, item["messages"])
        if not calls:
            errors["no_call"] += 1
            continue
        called += 1
        problems = []
        for call in calls:
            name = call["function"]["name"]
            if name not in tools:
                problems.append("unknown_tool")
            elif check_arguments(tools[name], call["function"]["arguments"])[1]:
                problems.append("bad_arguments")
        if problems:
            errors[problems[0]] += 1
        else:
            valid += 1
    n = len(items)
    return {"n": n, "called": called, "valid": valid, "valid_rate": round(valid / n, 4) if n else None,
            "errors": dict(errors)}


def style_figures(texts: list[str], patterns: list[dict], diversity) -> dict:
    """Template rate against the training set's patterns, and the diversity figures detect_templates reports
    (Vendi left out: a few dozen answers say little about it)."""
    figures = diversity_metrics(texts, dataclasses.replace(diversity, vendi_sample=0)) if texts else {}
    keep = ("distinct_1", "distinct_2", "self_repetition_4gram", "near_duplicate_rate", "exact_duplicate_rate")
    out = {k: figures.get(k) for k in keep}
    out["template_rate"] = template_rate(match_patterns(texts, patterns))
    out["mean_words"] = round(sum(len(words(t)) for t in texts) / len(texts), 1) if texts else 0.0
    return out


def trait_records(items: list[dict], answers: dict[str, list[str]]) -> list[dict]:
    """Each system's answer as a record the oracle's prompt scores: the conversation with its final answer
    replaced (tags kept, labels dropped), id "<conversation>::<system>"."""
    out = []
    for k, item in enumerate(items):
        r = item["record"]
        end = final_assistant_index(r["messages"])
        for system in SYSTEMS:
            messages = r["messages"][:end] + [{"role": "assistant", "content": answers[system][k]}]
            out.append({"id": f"{r['id']}::{system}", "messages": messages, "tags": r.get("tags", {})})
    return out


def trait_means(labeled: list[dict], dimensions: list[str]) -> dict[str, dict]:
    """Per system: the mean score on each dimension and the mean weighted score, with n."""
    out = {}
    for system in SYSTEMS:
        mine = [r for r in labeled if r["id"].endswith(f"::{system}")]
        if mine:
            out[system] = {"n": len(mine), "score": round(sum(r["score"] for r in mine) / len(mine), 3),
                           **{d: round(sum(r["labels"][d] for r in mine) / len(mine), 3) for d in dimensions}}
    return out


def pair_row(summary: dict, a: str, b: str) -> dict | None:
    """The summary's row for a vs b, turned to that orientation."""
    for row in summary["pairs"]:
        if (row["a"], row["b"]) == (a, b):
            return row
        if (row["a"], row["b"]) == (b, a):
            turned = {**row, "a": a, "b": b, "wins": row["losses"], "losses": row["wins"], "win_rate": 1 - row["win_rate"]}
            for key in ("lc_win_rate", "soft_win_rate"):
                if row.get(key) is not None:
                    turned[key] = 1 - row[key]
            return turned
    return None


def win_interval(row: dict) -> tuple[float, float]:
    """The win rate's 95% interval (normal, from AlpacaEval's standard error); (0, 1) when it has none."""
    if row.get("standard_error") is None:
        return 0.0, 1.0
    half = 1.96 * row["standard_error"]
    return max(0.0, row["win_rate"] - half), min(1.0, row["win_rate"] + half)


def chat_verdict(vs_base: dict | None, flip_rate: float | None, student_style: dict, tools: dict | None,
                 th) -> tuple[str, list[str]]:
    """DEPLOY / REVIEW / FAIL from the student-vs-base win rate's interval, the judge's flip rate, the
    student's template rate and, where test turns call tools, its valid tool-call share."""
    if not vs_base or not vs_base["n"]:
        return "FAIL", ["no student-vs-base comparison survived judging"]
    lo, hi = win_interval(vs_base)
    reasons = [f"student vs base: win rate {vs_base['win_rate']:.1%}, 95% interval [{lo:.1%}, {hi:.1%}] "
               f"over {vs_base['n']} conversations"]
    if hi < th.fail_win_rate:
        return "FAIL", reasons + [f"the interval lies below {th.fail_win_rate:.0%}: the base model answers better"]
    problems = []
    if lo <= th.deploy_win_rate:
        problems.append(f"the interval does not clear {th.deploy_win_rate:.0%}: no evidence the student beats its base")
    if flip_rate is not None and flip_rate > th.max_flip_rate:
        problems.append(f"the judge's verdict flips with the order in {flip_rate:.0%} of pairs "
                        f"(max {th.max_flip_rate:.0%}): its preferences are mostly position bias")
    if student_style["template_rate"] > th.max_template_rate:
        problems.append(f"{student_style['template_rate']:.0%} of the student's answers carry a training-set "
                        f"template (max {th.max_template_rate:.0%})")
    if tools and tools["n"] and tools["valid_rate"] < th.min_valid_tool_calls:
        problems.append(f"valid tool calls {tools['valid_rate']:.0%} of {tools['n']} tool turns "
                        f"(min {th.min_valid_tool_calls:.0%})")
    return ("REVIEW", reasons + problems) if problems else ("DEPLOY", reasons)
