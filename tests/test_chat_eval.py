"""The chat student's evaluation: the pairwise judge through the engine (both orders, scripted judges with a
known bias), its comparisons read back by `summarize`, tool-call validity, trait records and the verdict."""
from __future__ import annotations

import json
import re

import pytest

from distillery.engine.cache import CallCache
from distillery.engine.engine import Engine
from distillery.engine.job import JobRunner
from distillery.engine.journal import Journal
from distillery.evaluation.chat import (PAIRS, chat_verdict, pair_row, tool_call_validity, tool_items,
                                        trait_records)
from distillery.judging.aggregate import summarize
from distillery.judging.judge import JudgeJob, JudgePrompt, comparisons, judgements
from distillery.params import ChatThresholds, ModelSpec
from distillery.records import write_records
from distillery.testing.fake import FakeProvider
from tests.conftest import ROOT, conversation

RANK = {"student": 3, "reference": 2, "base": 1}  # the truth a fair judge finds


class ScriptedJudge(FakeProvider):
    """A judge whose preference is a function of (system shown first, system shown second)."""

    def __init__(self, prefer, *, score=False):
        super().__init__(model="judge" if score else "judge-json")
        self.prefer = prefer

    @staticmethod
    def shown(messages) -> tuple[str, str]:
        text = messages[-1]["content"]
        first = re.search(r"Answer 1:\n(\w+)", text).group(1)
        second = re.search(r"Answer 2:\n(\w+)", text).group(1)
        return first, second

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None):
        from distillery.providers.base import Completion

        self.calls.append({"kind": "complete", "messages": messages})
        verdict = self.prefer(*self.shown(messages))
        text = "I cannot decide, both are fine" if verdict is None else f"better: {verdict}"
        return Completion(text, 100, 3, self.name, self.model)

    def score(self, messages, *, fields, low, high):
        from distillery.providers.base import Completion

        self.calls.append({"kind": "score", "messages": messages})
        p_first = self.prefer(*self.shown(messages))  # here: P(the first shown is better)
        value = 2.0 - p_first  # the expected value over the tokens 1 and 2
        return Completion("", 100, 1, self.name, self.model, scores={"better": value})


def items(n=6):
    return [{"id": f"c{i}", "context": f"[user] weather in town {i}?",
             "answers": {s: f"{s} says it is sunny in town {i}" + " really" * RANK[s] for s in RANK}}
            for i in range(n)]


def judge_all(tmp_path, provider, n=6, tie_margin=0.1, parse_retries=1):
    spec = ModelSpec(provider="fake", model=provider.model, max_tokens=16)
    engine = Engine(spec, CallCache(tmp_path / "cache.sqlite"), provider=provider, max_retries=0, backoff_s=0.0)
    job = JudgeJob(JudgePrompt(ROOT / "prompts/judge.md"), "- relevance: on topic", engine, tie_margin=tie_margin,
                   parse_retries=parse_retries)
    todo = judgements(items(n), PAIRS)
    values, failures = JobRunner(job, engine, Journal(tmp_path / "journal.jsonl"), progress=False).run(todo).in_order(todo)
    lengths = {(i["id"], s): len(t) for i in items(n) for s, t in i["answers"].items()}
    rows = comparisons(values, lengths, judge="scripted")
    write_records(tmp_path / "comparisons.jsonl", rows)
    return rows, failures, summarize(tmp_path / "comparisons.jsonl", resamples=200, seed=0)


def test_a_fair_judge_ranks_the_systems_and_flips_nothing(tmp_path):
    fair = lambda first, second: 1 if RANK[first] > RANK[second] else 2  # noqa: E731
    rows, failures, summary = judge_all(tmp_path, ScriptedJudge(fair))
    assert not failures and len(rows) == 6 * 3
    assert summary["order"]["flip_rate"] == 0.0
    vs_base = pair_row(summary, "student", "base")
    assert (vs_base["wins"], vs_base["ties"], vs_base["losses"], vs_base["win_rate"]) == (6, 0, 0, 1.0)
    assert pair_row(summary, "base", "reference")["win_rate"] == 0.0
    strengths = summary["bradley_terry"]["strengths"]
    assert strengths["student"]["strength"] > strengths["reference"]["strength"] > strengths["base"]["strength"]


def test_a_judge_that_always_picks_the_first_shown_yields_only_ties_and_a_flip_rate_of_one(tmp_path):
    rows, _, summary = judge_all(tmp_path, ScriptedJudge(lambda first, second: 1))
    assert {(r["verdict_ab"], r["verdict_ba"]) for r in rows} == {("a", "b")}
    assert summary["order"]["flip_rate"] == 1.0 and summary["order"]["flipped_to_first"] == 18
    vs_base = pair_row(summary, "student", "base")
    assert (vs_base["wins"], vs_base["ties"], vs_base["losses"], vs_base["win_rate"]) == (0, 6, 0, 0.5)


def test_a_judge_that_prefers_the_student_only_when_shown_first_gives_half_flips_and_ties(tmp_path):
    def biased(first, second):
        if "student" in (first, second):
            return 1 if first == "student" else "tie"
        return 1 if RANK[first] > RANK[second] else 2

    rows, _, summary = judge_all(tmp_path, ScriptedJudge(biased))
    vs_base = pair_row(summary, "student", "base")
    assert (vs_base["wins"], vs_base["ties"], vs_base["losses"]) == (0, 6, 0)
    assert vs_base["order"]["half_flipped"] == 6
    assert summary["order"]["flip_rate"] == pytest.approx(12 / 18)  # base vs reference stays consistent
    assert pair_row(summary, "reference", "base")["win_rate"] == 1.0


def test_soft_preferences_from_token_probabilities_make_ties_within_the_margin(tmp_path):
    # P(first better): 0.9 when the student is first, 0.55 otherwise (inside the 0.1 tie margin).
    soft = lambda first, second: 0.9 if first == "student" else 0.55  # noqa: E731
    rows, _, summary = judge_all(tmp_path, ScriptedJudge(soft, score=True))
    row = next(r for r in rows if r["a"] == "student" and r["b"] == "base")
    assert (row["verdict_ab"], row["verdict_ba"]) == ("a", "tie")
    assert row["pref_ab"] == pytest.approx(0.9) and row["pref_ba"] == pytest.approx(0.45)  # P(student better)
    assert pair_row(summary, "student", "base")["soft_win_rate"] == pytest.approx(0.675)


def test_an_unreadable_verdict_is_asked_again_then_recorded_as_a_failure(tmp_path):
    def mute_on_student_first(first, second):  # no verdict when the student is shown before the base
        if (first, second) == ("student", "base"):
            return None
        return 1 if RANK[first] > RANK[second] else 2

    judge = ScriptedJudge(mute_on_student_first)
    rows, failures, summary = judge_all(tmp_path, judge, n=2, parse_retries=1)
    assert [f.reason for f in failures] == ["unreadable", "unreadable"]
    assert failures[0].raw == "I cannot decide, both are fine" and failures[0].attempts == 2
    assert len(judge.calls) == 12 + 2  # 12 judgements, the 2 mute ones asked twice
    single = [r for r in rows if "verdict_ba" not in r]
    # The pairs that lost their student-first order keep the base-first one, as single-order lines whose
    # `a` is the system shown first (verdict_ab is that order by definition): the base, which lost.
    assert [(r["a"], r["b"], r["verdict_ab"]) for r in single] == [("base", "student", "b")] * 2
    assert pair_row(summary, "student", "base")["win_rate"] == 1.0


def test_a_rerun_takes_every_judgement_from_the_journal(tmp_path):
    fair = lambda first, second: 1 if RANK[first] > RANK[second] else 2  # noqa: E731
    judge_all(tmp_path, ScriptedJudge(fair))
    again = ScriptedJudge(fair)
    rows, _, _ = judge_all(tmp_path, again)
    assert again.calls == [] and len(rows) == 18


def tool_conversation(rid, reply_args):
    r = conversation(rid, "Sunny, 20°C.")
    r["tools"] = [{"type": "function", "function": {"name": "get_weather", "parameters": {
        "type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]
    return r


def test_tool_call_validity_knows_tools_parses_arguments_and_checks_the_schema():
    prompts = tool_items([tool_conversation(f"t{i}", None) for i in range(5)])
    assert [p["messages"][-1]["role"] for p in prompts] == ["user"] * 5  # asked at the turn that called the tool
    replies = ['<tool_call>{"name": "get_weather", "arguments": {"city": "Oslo"}}</tool_call>',
               '<tool_call>{"name": "get_flights", "arguments": {"city": "Oslo"}}</tool_call>',
               '<tool_call>{"name": "get_weather", "arguments": {"town": "Oslo"}}</tool_call>',
               '<tool_call>{"name": "get_weather", "arguments": {"city": 7}}</tool_call>',
               "It is sunny in Oslo."]
    out = tool_call_validity(replies, prompts)
    assert (out["n"], out["called"], out["valid"], out["valid_rate"]) == (5, 4, 1, 0.2)
    assert out["errors"] == {"unknown_tool": 1, "bad_arguments": 2, "no_call": 1}


def test_trait_records_replace_only_the_final_answer():
    r = conversation("c1", "Reference answer.")
    items = [{"id": "c1", "record": r, "context": "", "reference": "Reference answer."}]
    out = trait_records(items, {"student": ["S."], "base": ["B."], "reference": ["Reference answer."]})
    assert [x["id"] for x in out] == ["c1::student", "c1::base", "c1::reference"]
    assert out[0]["messages"][:-1] == r["messages"][:-1] and out[0]["messages"][-1]["content"] == "S."


def row(win_rate, se, n=20):
    return {"a": "student", "b": "base", "n": n, "win_rate": win_rate, "standard_error": se}


@pytest.mark.parametrize("vs_base, flip, template, tools, verdict", [
    (row(0.8, 0.05), 0.1, 0.0, None, "DEPLOY"),
    (row(0.8, 0.05), 0.1, 0.0, {"n": 10, "valid_rate": 0.9}, "DEPLOY"),
    (row(0.55, 0.05), 0.1, 0.0, None, "REVIEW"),           # the interval reaches below 0.5
    (row(0.8, 0.05), 0.6, 0.0, None, "REVIEW"),            # the judge flips too often
    (row(0.8, 0.05), 0.1, 0.3, None, "REVIEW"),            # the student learned the templates
    (row(0.8, 0.05), 0.1, 0.0, {"n": 10, "valid_rate": 0.5}, "REVIEW"),
    (row(0.2, 0.05), 0.1, 0.0, None, "FAIL"),              # the base is better
    (None, None, 0.0, None, "FAIL"),
])
def test_the_verdict_follows_the_thresholds(vs_base, flip, template, tools, verdict):
    assert chat_verdict(vs_base, flip, {"template_rate": template}, tools, ChatThresholds())[0] == verdict


def test_comparisons_file_round_trips_through_the_cli(tmp_path):
    import subprocess
    import sys

    fair = lambda first, second: 1 if RANK[first] > RANK[second] else 2  # noqa: E731
    judge_all(tmp_path, ScriptedJudge(fair))
    out = subprocess.run([sys.executable, "-m", "distillery.judging", "summarize", str(tmp_path / "comparisons.jsonl"),
                          "--json"], capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)
    assert data["n_comparisons"] == 18 and set(data["systems"]) == {"student", "base", "reference"}


def test_either_student_switches_off_and_its_evaluation_says_skipped(tmp_path):
    """train.enabled / train_chat.enabled: false: the stages still write every out (DVC needs them),
    saying so, and the evaluations' verdict is SKIPPED."""
    import os
    import subprocess
    import sys

    from tests.conftest import params_file

    params = params_file(tmp_path / "params.yaml", {"train": {"enabled": False}, "train_chat": {"enabled": False}})
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "HF_HUB_OFFLINE": "1"}
    t = lambda *parts: str(tmp_path.joinpath(*parts))  # noqa: E731

    def stage(name, *args):
        out = subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), "--params", str(params), *args],
                             cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        return out.stdout

    assert "skipped" in stage("train", "--splits", t("splits"), "--model-dir", t("student"), "--metrics", t("m/train.json"),
                              "--details", t("d/train.json"), "--live-dir", t("dvclive"), "--figure", t("f/training.svg"))
    stage("evaluate", "--splits", t("splits"), "--model-dir", t("student"), "--report", t("evaluation.md"),
          "--metrics", t("m/evaluate.json"), "--details", t("d/evaluate.json"), "--predictions", t("p.json"),
          "--figure", t("f/test.svg"))
    stage("train_chat", "--splits", t("splits"), "--model-dir", t("chat"), "--metrics", t("m/train_chat.json"),
          "--details", t("d/train_chat.json"), "--live-dir", t("dvclive_chat"), "--figure", t("f/chat_training.svg"))
    stage("evaluate_chat", "--splits", t("splits"), "--model-dir", t("chat"), "--patterns", t("patterns.json"),
          "--judge-prompt", str(ROOT / "prompts/judge.md"), "--oracle-prompt", str(ROOT / "prompts/oracle.md"),
          "--answers", t("ce/answers.jsonl"), "--comparisons", t("ce/comparisons.jsonl"),
          "--failures", t("ce/failures.jsonl"), "--report", t("chat_evaluation.md"),
          "--metrics", t("m/evaluate_chat.json"), "--details", t("d/evaluate_chat.json"),
          "--strengths", t("strengths.json"), "--figure", t("f/strengths.svg"))
    for name in ("evaluate", "evaluate_chat"):
        assert json.loads((tmp_path / "m" / f"{name}.json").read_text()) == {"verdict": "SKIPPED"}
    assert json.loads((tmp_path / "m/train_chat.json").read_text()) == {"enabled": False}
    assert (tmp_path / "chat_evaluation.md").read_text().startswith("# Chat student evaluation\n\nSkipped")


def test_training_tool_calls_that_their_declarations_reject_are_counted():
    from distillery.training.sft import tool_call_problems

    good = tool_conversation("g", None)
    unknown = tool_conversation("u", None)
    unknown["messages"][2]["tool_calls"][0]["function"]["name"] = "search_flights"
    bad_args = tool_conversation("b", None)
    bad_args["messages"][2]["tool_calls"][0]["function"]["arguments"] = '{"town": "Paris"}'
    undeclared = conversation("n", "Sunny.")  # no declarations: nothing to check against
    out = tool_call_problems([good, unknown, bad_args, undeclared])
    assert (out["calls"], out["invalid"]) == (3, 2)
    assert out["examples"][0].startswith("u: search_flights") and "unknown tool" in out["examples"][0]
