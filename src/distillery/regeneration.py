"""Rewrite the final assistant message of templated records; tool calls and tool results untouched.

The prompt carries the persona, a few style examples drawn at random for that persona, and the
template spans to avoid. A rewrite that still contains a template, or is empty, is tried again with a
new sample index; after max_attempts the original is kept and the reason recorded in the record.
"""
from __future__ import annotations

import hashlib
import random
import re
from collections import deque
from pathlib import Path

from distillery.llm import BudgetExceeded, CallFailed, Engine
from distillery.neardup import jaccard, shingles
from distillery.params import DiversityParams, RegenerateParams
from distillery.records import render_context, subject_text, with_subject
from distillery.templates import match_patterns


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


def check_rewrite(text: str, patterns: list[dict], recent: RecentRewrites | None = None) -> str | None:
    """Why a rewrite is unusable ("<category>: <detail>"), or None when it is fine."""
    if len(text.split()) < 3:
        return f"too_short: {len(text.split())} words"
    hits = match_patterns([text], patterns)[0]
    if hits:
        return f"templated: still contains {hits[0]}"
    twin = recent.near_duplicate_of(text) if recent else None
    return f"near_duplicate: of a recent rewrite ({twin[:60]!r})" if twin else None


def _journal_split(records, flagged, engine, prompt, cfg, seed, journal):
    """(flagged records, outcomes from the journal, records still to rewrite, journal keys)."""
    from distillery.cache import content_key

    # The budget and retry count decide how far a run gets, not what it writes: not part of the key.
    knobs = {k: v for k, v in vars(cfg).items() if k not in ("budget_usd", "max_retries")}
    todo = [r for r in records if r["id"] in flagged]
    keys = {r["id"]: content_key(record=r, prompt=prompt.hash, cfg=knobs, seed=seed, spec=engine.spec.identity())
            for r in todo}
    done = journal.load() if journal else {}
    results = {r["id"]: done[keys[r["id"]]] for r in todo if keys[r["id"]] in done}
    return todo, results, [r for r in todo if r["id"] not in results], keys


def plan_rewrites(records, flagged, patterns, style, engine: Engine, prompt: "RegeneratePrompt",
                  cfg: RegenerateParams, seed: int, journal=None) -> dict:
    """The first-attempt calls regenerate_all would make now; a rejected rewrite costs up to
    max_attempts calls, so calls_max bounds the spend. (The prompts' recent-rewrite examples are only
    known as the run goes, so cache hits are counted on the journal, not predicted.)"""
    by_pattern = {p["id"]: p for p in patterns}
    todo, results, pending, _ = _journal_split(records, flagged, engine, prompt, cfg, seed, journal)
    messages = [build_messages(r, prompt, style_examples(style, (r.get("tags") or {}).get("persona", "neutral"),
                                                         cfg.n_style_examples, seed + 1, r["id"]),
                               [by_pattern[p]["text"] for p in flagged[r["id"]] if p in by_pattern],
                               engine.spec.context_chars, []) for r in pending]
    est = engine.estimate("complete", messages, engine.complete_opts(len(messages), temperature=cfg.temperature,
                                                                     max_tokens=cfg.max_tokens, samples=[1] * len(messages)))
    return {"records": len(todo), "journal_hits": len(results), **est,
            "calls_max": est["calls"] * cfg.max_attempts, "cost_usd_max": round(est["cost_usd_max"] * cfg.max_attempts, 4)}


def regenerate_all(records: list[dict], flagged: dict[str, list[str]], patterns: list[dict],
                   style: dict[str, list[str]], engine: Engine, prompt: RegeneratePrompt,
                   cfg: RegenerateParams, seed: int, journal=None, div: DiversityParams | None = None) -> list[dict]:
    """All records in order, the flagged ones rewritten (or kept, with the reason)."""
    from tqdm import tqdm

    by_pattern = {p["id"]: p for p in patterns}
    todo, results, pending, keys = _journal_split(records, flagged, engine, prompt, cfg, seed, journal)
    engine.stats.journal_hits += len(results)
    recent = RecentRewrites(cfg.recent_window, div or DiversityParams())
    for r in todo:  # a resumed run remembers what it already wrote
        if r["id"] in results and results[r["id"]].get("text"):
            recent.add(results[r["id"]]["text"])
    with tqdm(total=len(todo), initial=len(results), desc="regenerate", unit="rec", disable=None,
              mininterval=2) as bar:
        for start in range(0, len(pending), cfg.batch_size):
            for record, outcome in _rewrite_batch(pending[start:start + cfg.batch_size], flagged, by_pattern,
                                                   patterns, style, engine, prompt, cfg, seed, recent):
                results[record["id"]] = outcome
                if journal:
                    journal.append(keys[record["id"]], outcome)
                bar.update(1)
    out = []
    for r in records:
        if r["id"] not in results:
            out.append(r)
            continue
        outcome = results[r["id"]]
        new = with_subject(r, outcome["text"]) if outcome.get("text") else dict(r)
        new["regenerated"] = {k: v for k, v in outcome.items() if k != "text"}
        out.append(new)
    return out


def _rewrite_batch(batch, flagged, by_pattern, patterns, style, engine, prompt, cfg, seed, recent):
    """Yield (record, outcome) once each record is settled; retry only the ones that need it."""
    outcome = {r["id"]: {"from": subject_text(r), "patterns": flagged[r["id"]], "attempt": 0,
                         "rejected": []} for r in batch}
    pending = list(batch)
    for attempt in range(1, cfg.max_attempts + 1):
        messages = []
        for r in pending:
            avoid = [by_pattern[p]["text"] for p in flagged[r["id"]] if p in by_pattern]
            examples = style_examples(style, (r.get("tags") or {}).get("persona", "neutral"),
                                      cfg.n_style_examples, seed + attempt, r["id"])
            messages.append(build_messages(r, prompt, examples, avoid, engine.spec.context_chars,
                                           recent.last(cfg.n_recent_examples)))
        replies = engine.complete_many(messages, temperature=cfg.temperature, max_tokens=cfg.max_tokens,
                                       samples=[attempt] * len(messages))
        still, stopped = [], None
        for r, reply in zip(pending, replies):
            if isinstance(reply, BudgetExceeded):  # not made: neither a rewrite nor a failure
                stopped = reply
                continue
            o = outcome[r["id"]]
            o["attempt"] = attempt
            problem = (f"call_failed: {reply}" if isinstance(reply, CallFailed)
                       else check_rewrite(reply.text, patterns, recent))
            if problem is None:
                o["text"] = reply.text
                recent.add(reply.text)
                yield r, o
            else:
                o["rejected"].append(problem)
                still.append(r)
        if stopped:
            raise stopped  # what was settled above is already journaled by the caller
        pending = still
        if not pending:
            return
    for r in pending:
        outcome[r["id"]]["kept_original"] = outcome[r["id"]]["rejected"][-1]
        yield r, outcome[r["id"]]
