"""Rewrite the final assistant message of templated records; tool calls and tool results untouched.

The prompt carries the persona, a few style examples drawn at random for that persona, and the
template spans to avoid. A rewrite that still contains a template, is empty, or drops, changes or invents
a fact (facts.py: the original's numbers, units and names against the tool results) is tried again with a
new sample index; after max_attempts the original is kept and the reason recorded in the record.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import deque
from pathlib import Path

from distillery.engine.job import Accept, Failure, Job, JobRunner, Reject
from distillery.engine.requests import CompleteRequest
from distillery.text.tokens import jaccard, shingles
from distillery.params import DiversityParams, RegenerateParams
from distillery.records import render_context, subject_text, with_subject
from distillery.regeneration.facts import FactCheck, check_facts, fact_sources
from distillery.text.templates import match_patterns


class RegeneratePrompt:
    """prompts/regenerate.md: placeholders {persona} {style_examples} {avoid} {context} {original}."""

    def __init__(self, path: Path | str):
        text = Path(path).read_text(encoding="utf-8")
        self.template = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S).strip()
        self.hash = hashlib.sha256(text.encode()).hexdigest()[:12]


def style_examples(style: dict[str, list[str]], persona: str, n: int, seed: int, record_id: str) -> list[str]:
    """n examples of the persona's style, drawn with a seed per record so a rerun asks the same thing."""
    pool = style.get(persona) or [t for texts in style.values() for t in texts]
    rng = random.Random(f"{seed}:{record_id}")
    return rng.sample(pool, min(n, len(pool)))


def build_messages(record: dict, prompt: RegeneratePrompt, examples: list[str], avoid: list[str],
                   context_chars: int = 1200, recent: list[str] = ()) -> list[dict]:
    persona = (record.get("tags") or {}).get("persona", "neutral")
    content = prompt.template.format(
        persona=persona,
        style_examples="\n".join(f"- {e}" for e in examples),
        avoid="\n".join(f'- "{a}"' for a in avoid) or "- (none)",
        recent="\n".join(f'- "{r}"' for r in recent) or "- (none yet)",
        context=render_context(record, context_chars),
        original=subject_text(record),
    )
    return [{"role": "user", "content": content}]


class RecentRewrites:
    """The last `window` accepted rewrites, to refuse a new one that is a near-duplicate of any."""

    def __init__(self, window: int, div: DiversityParams):
        self.window, self.div = window, div
        self.items: deque[tuple[str, set]] = deque(maxlen=max(1, window))

    def add(self, text: str) -> None:
        if self.window:
            self.items.append((text, shingles(text, self.div.shingle)))

    def near_duplicate_of(self, text: str) -> str | None:
        mine = shingles(text, self.div.shingle)
        return next((t for t, sh in self.items if jaccard(mine, sh) >= self.div.threshold), None)

    def last(self, n: int) -> list[str]:
        return [t for t, _ in list(self.items)[-n:]] if n else []


# A rewrite that talks about the task instead of doing it ("Here's a rewritten version:", "The user
# requested …, so I'll …") is not an answer. Matched at the start, where such chatter sits.
META_CHATTER = re.compile(
    r"^\W*(here('s| is) (a |an |the |my )?(re-?written|revised|new|updated|improved|rephrased)\b"
    r"|(sure|certainly|of course)\b[,!.]"
    r"|the user (requested|asked|wants|is asking)\b"
    r"|(i'll|i will|let me) (use|rewrite|rephrase|revise|provide)\b"
    r"|(re-?written|revised|rephrased) (version|response|answer)\b)", re.I)


def check_rewrite(text: str, patterns: list[dict], recent: RecentRewrites | None = None,
                  truncated: bool = False, max_tokens: int | None = None,
                  facts: FactCheck | None = None) -> Reject | None:
    """Why a rewrite is unusable, or None when it is fine. `facts`: check_facts of this rewrite against
    the original (None: not checked)."""
    if truncated:
        return Reject("truncated", f"cut off at max_tokens={max_tokens} (raise regenerate.max_tokens)")
    if META_CHATTER.search(text):
        return Reject("meta_chatter", f"talks about the task: {text[:60]!r}")
    if len(text.split()) < 3:
        return Reject("too_short", f"{len(text.split())} words")
    hits = match_patterns([text], patterns)[0]
    if hits:
        return Reject("templated", f"still contains {hits[0]}")
    if facts is not None and not facts.ok:  # facts_dropped (dropped or changed) or invention
        return Reject(facts.reason, facts.detail)
    twin = recent.near_duplicate_of(text) if recent else None
    return Reject("near_duplicate", f"of a recent rewrite ({twin[:60]!r})") if twin else None


class RegenerateJob(Job):
    """Rewrite the final answer of each flagged record. Waves of `batch_size` run in corpus order, so
    each wave's prompts show the rewrites accepted before it ("do not repeat these"). After
    max_attempts rejected rewrites the original is kept, with every reason: that is a result, journaled.
    Every reply not cut off has its facts checked and tallied per record (`facts`: checked, kept,
    inventions), with regenerate.check_facts off too, so the figures say what the check would refuse."""

    name = "regenerate"

    def __init__(self, flagged: dict[str, list[str]], patterns: list[dict], style: dict[str, list[str]],
                 prompt: RegeneratePrompt, cfg: RegenerateParams, seed: int, context_chars: int,
                 div: DiversityParams):
        self.flagged, self.patterns, self.style, self.prompt = flagged, patterns, style, prompt
        self.cfg, self.seed, self.context_chars = cfg, seed, context_chars
        self.by_pattern = {p["id"]: p for p in patterns}
        self.max_attempts, self.wave_size = cfg.max_attempts, cfg.batch_size
        self.recent = RecentRewrites(cfg.recent_window, div)
        self.fact_tally: dict[str, dict[str, int]] = {}

    def key(self, record: dict) -> dict:
        # The budget and retry count decide how far a run gets, not what it writes: not part of the key.
        knobs = {k: v for k, v in vars(self.cfg).items() if k not in ("budget_usd", "max_retries")}
        return {"record": record, "prompt": self.prompt.hash, "cfg": knobs, "seed": self.seed}

    def request(self, record: dict, attempt: int) -> CompleteRequest:
        avoid = [self.by_pattern[p]["text"] for p in self.flagged[record["id"]] if p in self.by_pattern]
        examples = style_examples(self.style, (record.get("tags") or {}).get("persona", "neutral"),
                                  self.cfg.n_style_examples, self.seed + attempt, record["id"])
        messages = build_messages(record, self.prompt, examples, avoid, self.context_chars,
                                  self.recent.last(self.cfg.n_recent_examples))
        return CompleteRequest(messages, self.cfg.temperature, self.cfg.max_tokens, attempt)

    def parse(self, record: dict, reply, attempt: int) -> Accept | Reject:
        facts = None
        if not reply.truncated:
            original, context = fact_sources(record)
            facts = check_facts(original, reply.text, context)
            tally = self.fact_tally.setdefault(record["id"], {"checked": 0, "kept": 0, "inventions": 0})
            tally["checked"] += 1
            tally["kept"] += facts.kept
            tally["inventions"] += bool(facts.invented)
        problem = check_rewrite(reply.text, self.patterns, self.recent, reply.truncated, self.cfg.max_tokens,
                                facts if self.cfg.check_facts else None)
        if problem is not None:
            return problem
        self.recent.add(reply.text)
        return Accept({"text": reply.text})

    def accepted(self, record: dict, accept: Accept, rejections: list[Reject]) -> Accept:
        return Accept({**self._outcome(record, len(rejections) + 1, rejections), "text": accept.value["text"]})

    def call_failed(self, record: dict, error) -> Reject:
        return Reject("call_failed", str(error))

    def exhausted(self, record: dict, rejections: list[Reject]) -> Accept | Failure:
        if rejections[-1].reason == "call_failed":  # not the rewrite's fault: not journaled, tried next run
            return Failure(record["id"], "call_failed", rejections[-1].detail, attempts=len(rejections))
        outcome = self._outcome(record, len(rejections), rejections)
        return Accept({**outcome, "kept_original": rejections[-1].as_dict()})

    def resumed(self, record: dict, value: dict) -> None:
        if value.get("text"):  # a resumed run remembers what it already wrote
            self.recent.add(value["text"])

    def _outcome(self, record: dict, attempt: int, rejections: list[Reject] = ()) -> dict:
        return {"from": subject_text(record), "patterns": self.flagged[record["id"]], "attempt": attempt,
                "rejected": [r.as_dict() for r in rejections],
                "facts": dict(self.fact_tally.get(record["id"], {"checked": 0, "kept": 0, "inventions": 0}))}


LABEL_FIELDS = ("labels", "score", "tier", "oracle")  # written for the old text: dropped on a rewrite


def apply_rewrites(records: list[dict], outcomes: dict[str, dict], failures: list[Failure] = ()) -> list[dict]:
    """All records in order, the rewritten ones with their new answer, each flagged one with
    `regenerated` (what it was, which patterns, attempts, rejections, or why the original was kept).
    A rewritten record loses labels it arrived with: they judged the old text (label scores the new)."""
    failed = {f.id: f for f in failures}
    out = []
    for r in records:
        outcome = outcomes.get(r["id"])
        if outcome is None and r["id"] in failed:
            f = failed[r["id"]]
            outcome = {"from": subject_text(r), "attempt": f.attempts,
                       "kept_original": {"reason": f.reason, "detail": f.detail}}
        if outcome is None:
            out.append(r)
            continue
        new = with_subject(r, outcome["text"]) if outcome.get("text") else dict(r)
        info = {k: v for k, v in outcome.items() if k != "text"}
        if outcome.get("text") and any(k in r for k in LABEL_FIELDS):
            new = {k: v for k, v in new.items() if k not in LABEL_FIELDS}
            info["dropped_labels"] = True
        new["regenerated"] = info
        out.append(new)
    return out


def regenerate_all(records: list[dict], flagged: dict[str, list[str]], patterns: list[dict],
                   style: dict[str, list[str]], engine, prompt: RegeneratePrompt, cfg: RegenerateParams,
                   seed: int, journal=None, div: DiversityParams | None = None) -> list[dict]:
    """All records in order, the flagged ones rewritten (or kept, with the reasons): RegenerateJob
    through the job runner."""
    job = RegenerateJob(flagged, patterns, style, prompt, cfg, seed, engine.spec.context_chars,
                        div or DiversityParams())
    result = JobRunner(job, engine, journal).run([r for r in records if r["id"] in flagged])
    return apply_rewrites(records, result.values, result.failures)
