"""The oracle: format a record into the prompt, get dimension scores, parse and validate them.

Formatting (`build_messages`) is separate from parsing (`parse_scores`): a reply that does not parse
becomes a recorded failure with its raw text, never a crash and never a silent default.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from distillery.llm import CallFailed, Engine
from distillery.params import FilterParams
from distillery.records import render_context, subject_text
from distillery.scoring import tier_of, weighted_score

RECORD_HEADING = "## Record"


class ParseError(ValueError):
    pass


class OraclePrompt:
    """prompts/oracle.md: above the "## Record" heading is the system prompt (the same for every
    record), below it the user message. Placeholders: {filter_name} {dimensions} {scale_min}
    {scale_max} {context} {answer} {reply_format}."""

    def __init__(self, path: Path | str):
        text = Path(path).read_text(encoding="utf-8")
        text = re.sub(r"<!--.*?-->\s*", "", text, flags=re.S)  # comments are for people editing it
        if RECORD_HEADING not in text:
            raise ValueError(f"{path}: the oracle prompt needs a '{RECORD_HEADING}' heading before the record part")
        self.system, self.user = (part.strip() for part in text.split(RECORD_HEADING, 1))
        self.hash = hashlib.sha256(text.encode()).hexdigest()[:12]


def build_messages(record: dict, prompt: OraclePrompt, filt: FilterParams, *, json_reply: bool,
                   context_chars: int = 1200) -> list[dict]:
    dims = "\n".join(f"- {name}: {d.description}" for name, d in filt.dimensions.items())
    lo, hi = int(filt.scale_min), int(filt.scale_max)
    if json_reply:
        example = ", ".join(f'"{name}": <{lo}-{hi}>' for name in filt.dimensions)
        reply = f'Reply with JSON only, no prose: {{"scores": {{{example}}}, "reasoning": "<one sentence>"}}'
    else:
        reply = "Reply with one line per dimension, in the order listed, as `name: score`."
    values = {"filter_name": filt.name, "dimensions": dims, "scale_min": lo, "scale_max": hi,
              "context": render_context(record, context_chars) or "(none)", "answer": subject_text(record),
              "reply_format": reply}
    return [{"role": "system", "content": prompt.system.format(**values)},
            {"role": "user", "content": prompt.user.format(**values)}]


def parse_scores(text: str, filt: FilterParams) -> tuple[dict[str, float], str]:
    """(scores, reasoning) from a JSON reply; ParseError says what was wrong."""
    match = re.search(r"\{.*\}", text, flags=re.S)  # tolerate prose or code fences around the JSON
    if not match:
        raise ParseError("no JSON object in the reply")
    try:
        data = json.loads(match.group(0))
    except json.JSONDecodeError as exc:
        raise ParseError(f"invalid JSON: {exc.msg}") from None
    scores = data.get("scores", data) if isinstance(data, dict) else None
    if not isinstance(scores, dict):
        raise ParseError("'scores' is not an object")
    return validate_scores(scores, filt), str(data.get("reasoning", ""))


def validate_scores(scores: dict, filt: FilterParams) -> dict[str, float]:
    out = {}
    for name in filt.dimensions:
        if name not in scores:
            raise ParseError(f"dimension {name!r} missing")
        value = scores[name]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParseError(f"dimension {name!r} is not a number: {value!r}")
        if not filt.scale_min <= value <= filt.scale_max:
            raise ParseError(f"dimension {name!r} = {value} outside {filt.scale_min:g}-{filt.scale_max:g}")
        out[name] = float(value)
    return out


def annotate(record: dict, labels: dict[str, float], filt: FilterParams, oracle: dict) -> dict:
    score = weighted_score(labels, filt)
    return {**record, "labels": labels, "score": score, "tier": tier_of(score, filt), "oracle": oracle}


def label_batch(records: list[dict], engine: Engine, prompt: OraclePrompt, filt: FilterParams):
    """Yield (record, labeled record or None, failure or None) for each record, in order."""
    use_score = engine.provider.supports_score
    batch = [build_messages(r, prompt, filt, json_reply=not use_score, context_chars=engine.spec.context_chars)
             for r in records]
    if use_score:
        replies = engine.score_many(batch, fields=list(filt.dimensions), low=filt.scale_min, high=filt.scale_max)
    else:
        replies = engine.complete_many(batch, temperature=engine.spec.temperature)
    for record, reply in zip(records, replies):
        if isinstance(reply, CallFailed):
            yield record, None, {"id": record["id"], "stage_reason": "call_failed", "error": str(reply)}
            continue
        try:
            if use_score:
                labels, reasoning = validate_scores(reply.scores or {}, filt), "expected value over score tokens"
            else:
                labels, reasoning = parse_scores(reply.text, filt)
        except ParseError as exc:
            yield record, None, {"id": record["id"], "stage_reason": "parse_failed", "error": str(exc),
                                 "raw": reply.text}
            continue
        oracle = {"provider": reply.provider, "model": reply.model, "prompt_hash": prompt.hash,
                  "reasoning": reasoning}
        yield record, annotate(record, labels, filt, oracle), None


def label_all(records: list[dict], engine: Engine, prompt: OraclePrompt, filt: FilterParams, *,
              journal=None, batch_size: int = 16, desc: str = "label"):
    """Label every record; return (labeled, failures), both in corpus order.

    With a journal, each result is appended as soon as it exists, and records already in the journal
    (same record, prompt, filter and oracle) are taken from it: a killed run resumes where it stopped.
    """
    from tqdm import tqdm

    from distillery.cache import content_key

    def key(record):
        return content_key(record=record, prompt=prompt.hash, filter=repr(filt), spec=repr(engine.spec))

    done = journal.load() if journal else {}
    keys = {r["id"]: key(r) for r in records} if journal else {}
    results: dict[str, dict] = {}
    todo = []
    for r in records:
        if keys.get(r["id"]) in done:
            results[r["id"]] = done[keys[r["id"]]]
        else:
            todo.append(r)
    engine.stats.journal_hits += len(records) - len(todo)
    # Similar lengths batch together, so a batch pads little (results go back in corpus order).
    todo.sort(key=lambda r: len(subject_text(r)) + len(render_context(r, engine.spec.context_chars)))
    with tqdm(total=len(records), initial=len(records) - len(todo), desc=desc, unit="rec",
              disable=None, mininterval=2) as bar:
        for start in range(0, len(todo), batch_size):
            for record, labeled, failure in label_batch(todo[start:start + batch_size], engine, prompt, filt):
                entry = {"labeled": labeled} if labeled else {"failure": failure}
                results[record["id"]] = entry
                if journal and labeled:  # failures are not journaled: the next run tries them again
                    journal.append(keys[record["id"]], entry)
                bar.update(1)
    labeled = [results[r["id"]]["labeled"] for r in records if "labeled" in results[r["id"]]]
    failures = [results[r["id"]]["failure"] for r in records if "failure" in results[r["id"]]]
    return labeled, failures
