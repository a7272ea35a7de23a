"""The pairwise judge: an LLM compares two answers to the same conversation under the rubric in
prompts/judge.md, in both orders, through the engine (cached, journaled, budgeted, plannable like every call).

Each *judgement* is one order of one pair: {"id": "<pair_id>|<a>|<b>|ab", "pair_id", "a", "b", "order",
"context", "first", "second"}, where order "ab" shows a's answer first. `comparisons()` joins the two orders
of each pair into the comparison file's lines (judging/aggregate.py documents the format), so the judge's
output and a file of human ratings are read by the same `summarize`.

A provider that reads token probabilities (the local model) is asked for `better: 1` or `better: 2` and
scored on those two tokens: the soft preference P(first is better) is kept, and a preference within
tie_margin of 0.5 is a tie. A hosted judge is asked to reply `better: 1`, `better: 2` or `better: tie`; a
reply that names none is asked again (a new sample), then recorded as a failure with its text.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from distillery.engine.job import Accept, Job, Reject
from distillery.engine.requests import CompleteRequest, ScoreRequest

COMPARISON_HEADING = "## Comparison"
FIELD = "better"  # the reply's one field: 1 (the first answer), 2 (the second) or tie
VERDICT = re.compile(rf"{FIELD}\s*[:=]\s*\**\s*(1|2|tie)\b", re.I)
BARE = re.compile(r"^\W*(1|2|tie)\b", re.I)


class JudgePrompt:
    """prompts/judge.md: above the "## Comparison" heading is the system prompt, below it the user message.
    Placeholders: {rubric} {context} {first} {second} {reply_format}."""

    def __init__(self, path: Path | str):
        text = Path(path).read_text(encoding="utf-8")
        text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S)
        if COMPARISON_HEADING not in text:
            raise ValueError(f"{path}: the judge prompt needs a '{COMPARISON_HEADING}' heading before the pair")
        self.system, self.user = (part.strip() for part in text.split(COMPARISON_HEADING, 1))
        self.hash = hashlib.sha256(text.encode()).hexdigest()[:12]


def identical(judgement: dict) -> dict:
    """The verdict on two identical answers, which no judge is asked for: a tie."""
    return {**{k: judgement[k] for k in ("id", "pair_id", "a", "b", "order")}, "winner": "tie", "pref_first": 0.5}


def judgements(items: list[dict], pairs: list[tuple[str, str]]) -> list[dict]:
    """Both orders of every pair of systems on every item ({"id", "context", "answers": {system: text}}).
    Two identical answers (a student that learned nothing yet answers as its base) need no judge: see
    `identical`."""
    out = []
    for item in items:
        for a, b in pairs:
            for order, (first, second) in (("ab", (a, b)), ("ba", (b, a))):
                out.append({"id": f"{item['id']}|{a}|{b}|{order}", "pair_id": item["id"], "a": a, "b": b,
                            "order": order, "context": item["context"], "first": item["answers"][first],
                            "second": item["answers"][second]})
    return out


class JudgeJob(Job):
    name = "judge"
    first_attempt = 0

    def __init__(self, prompt: JudgePrompt, rubric: str, engine, *, tie_margin: float = 0.1, parse_retries: int = 1):
        self.prompt, self.rubric, self.tie_margin = prompt, rubric, tie_margin
        self.max_attempts = parse_retries + 1
        self.use_score = engine.provider.supports_score
        self.spec = engine.spec

    def key(self, record: dict) -> dict:
        return {"judgement": record, "prompt": self.prompt.hash, "rubric": self.rubric, "tie_margin": self.tie_margin}

    def order(self, records: list[dict]) -> list[dict]:
        return sorted(records, key=lambda r: len(r["context"]) + len(r["first"]) + len(r["second"]))

    def messages(self, record: dict) -> list[dict]:
        if self.use_score:
            reply = f"Reply `{FIELD}: 1` if answer 1 is better, `{FIELD}: 2` if answer 2 is better."
        else:
            reply = (f"Reply with one line: `{FIELD}: 1` if answer 1 is better, `{FIELD}: 2` if answer 2 is "
                     f"better, `{FIELD}: tie` if neither is. Nothing else.")
        values = {"rubric": self.rubric, "context": record["context"] or "(none)", "first": record["first"] or "(empty)",
                  "second": record["second"] or "(empty)", "reply_format": reply}
        return [{"role": "system", "content": self.prompt.system.format(**values)},
                {"role": "user", "content": self.prompt.user.format(**values)}]

    def request(self, record: dict, attempt: int):
        if self.use_score:
            return ScoreRequest(self.messages(record), (FIELD,), 1, 2)
        return CompleteRequest(self.messages(record), self.spec.temperature, self.spec.max_tokens, attempt)

    def parse(self, record: dict, reply, attempt: int):
        base = {k: record[k] for k in ("id", "pair_id", "a", "b", "order")}
        if self.use_score:
            p_first = min(1.0, max(0.0, 2.0 - float((reply.scores or {})[FIELD])))  # 1 → first, 2 → second
            winner = "tie" if abs(p_first - 0.5) <= self.tie_margin else ("first" if p_first > 0.5 else "second")
            return Accept({**base, "winner": winner, "pref_first": round(p_first, 4)})
        text = reply.text or ""
        found = VERDICT.search(text) or BARE.search(text.strip())
        if not found:
            return Reject("unreadable", f"the judge named no winner (expected `{FIELD}: 1|2|tie`)", text)
        winner = {"1": "first", "2": "second"}.get(found.group(1).lower(), "tie")
        return Accept({**base, "winner": winner, "pref_first": None})


def comparisons(values: list[dict], lengths: dict[tuple[str, str], int], judge: str) -> list[dict]:
    """The comparison file's lines: one per (pair_id, a, b) judged. A pair with one order lost to a failure
    keeps the order it has, as a single-order line (its systems swapped if only b-first survived, since
    verdict_ab is by definition the order with a shown first). `lengths[(pair_id, system)]` is an answer's length."""
    by_pair: dict[tuple, dict] = {}
    for v in values:
        by_pair.setdefault((v["pair_id"], v["a"], v["b"]), {})[v["order"]] = v
    rows = []
    for (pid, a, b), orders in by_pair.items():
        first_shown = orders.get("ab") or orders["ba"]
        if "ab" not in orders:
            a, b = b, a  # now a is the system shown first, as in an "ab" order
        second_shown = orders.get("ba") if "ab" in orders else None
        # A verdict names the winning system: first shown = a in verdict_ab, = b in verdict_ba.
        row = {"pair_id": pid, "a": a, "b": b, "len_a": lengths[(pid, a)], "len_b": lengths[(pid, b)], "judge": judge,
               "verdict_ab": {"first": "a", "second": "b", "tie": "tie"}[first_shown["winner"]]}
        if second_shown:
            row["verdict_ba"] = {"first": "b", "second": "a", "tie": "tie"}[second_shown["winner"]]
        if first_shown["pref_first"] is not None and (not second_shown or second_shown["pref_first"] is not None):
            row["pref_ab"] = first_shown["pref_first"]  # P(a is better), a shown first
            if second_shown:
                row["pref_ba"] = round(1 - second_shown["pref_first"], 4)  # b was shown first
        rows.append(row)
    return rows
