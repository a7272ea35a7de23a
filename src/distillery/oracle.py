"""The oracle: format a record into the prompt, get dimension scores, parse and validate them.

Formatting (`build_messages`) is separate from parsing (`parse_scores`): a reply that does not parse
becomes a recorded failure with its raw text, never a crash and never a silent default.
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

from distillery.llm import BudgetExceeded, CallFailed, Engine
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


def reply_schema(filt: FilterParams) -> dict:
    """The JSON schema of an oracle reply, for providers that can enforce one (tools, JSON schema)."""
    dim = {"type": "number", "minimum": filt.scale_min, "maximum": filt.scale_max}
    return {"type": "object", "additionalProperties": False, "required": ["scores", "reasoning"],
            "properties": {"scores": {"type": "object", "additionalProperties": False,
                                      "required": list(filt.dimensions),
                                      "properties": {name: dim for name in filt.dimensions}},
                           "reasoning": {"type": "string"}}}


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
    """Every dimension present, numeric and in range. The one safe repair: a number written as a
    string ("7", " 7.5 ") is read as that number. Nothing is clamped, guessed or defaulted."""
    out = {}
    for name in filt.dimensions:
        if name not in scores:
            raise ParseError(f"dimension {name!r} missing")
        value = scores[name]
        if isinstance(value, str):
            try:
                value = float(value.strip())
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ParseError(f"dimension {name!r} is not a number: {value!r}")
        if not filt.scale_min <= value <= filt.scale_max:
            raise ParseError(f"dimension {name!r} = {value} outside {filt.scale_min:g}-{filt.scale_max:g}")
        out[name] = float(value)
    return out


def annotate(record: dict, labels: dict[str, float], filt: FilterParams, oracle: dict) -> dict:
    score = weighted_score(labels, filt)
    return {**record, "labels": labels, "score": score, "tier": tier_of(score, filt), "oracle": oracle}


def label_replies(records: list[dict], engine: Engine, prompt: OraclePrompt, filt: FilterParams,
                  attempt: int = 0):
    """Yield (record, labeled record or None, failure or None) for each record, as calls settle.

    A local model is scored from its token probabilities; a hosted one is asked for JSON against
    reply_schema(filt). `attempt` > 0 asks again with a new sample index (a new cache key)."""
    use_score = engine.provider.supports_score
    kind, batch, opts = _oracle_calls(records, engine, prompt, filt, attempt)
    for i, reply in engine.run(kind, batch, opts):
        record = records[i]
        if isinstance(reply, BudgetExceeded):
            yield record, None, {"id": record["id"], "stage_reason": "budget", "error": str(reply)}
            continue
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


def _oracle_calls(records, engine: Engine, prompt: OraclePrompt, filt: FilterParams, attempt: int = 0):
    """(kind, messages, opts) of the calls that label `records`."""
    use_score = engine.provider.supports_score
    batch = [build_messages(r, prompt, filt, json_reply=not use_score, context_chars=engine.spec.context_chars)
             for r in records]
    if use_score:
        return "score", batch, engine.score_opts(len(batch), fields=list(filt.dimensions), low=filt.scale_min,
                                                 high=filt.scale_max)
    return "complete", batch, engine.complete_opts(len(batch), samples=[attempt] * len(batch),
                                                   schema=reply_schema(filt))


def _journal_split(records, engine, prompt, filt, journal):
    """(results taken from the journal, records still to label, journal keys)."""
    from distillery.cache import content_key

    def key(record):
        return content_key(record=record, prompt=prompt.hash, filter=repr(filt), spec=engine.spec.identity())

    done = journal.load() if journal else {}
    keys = {r["id"]: key(r) for r in records} if journal else {}
    results = {r["id"]: done[keys[r["id"]]] for r in records if keys.get(r["id"]) in done}
    return results, [r for r in records if r["id"] not in results], keys


def plan_labels(records: list[dict], engine: Engine, prompt: OraclePrompt, filt: FilterParams, journal=None) -> dict:
    """The calls, tokens and cost that label_all would spend now, counting journal and cache hits."""
    done, todo, _ = _journal_split(records, engine, prompt, filt, journal)
    kind, batch, opts = _oracle_calls(todo, engine, prompt, filt)
    return {"records": len(records), "journal_hits": len(done), **engine.estimate(kind, batch, opts)}


def label_all(records: list[dict], engine: Engine, prompt: OraclePrompt, filt: FilterParams, *,
              journal=None, parse_retries: int = 1, desc: str = "label"):
    """Label every record; return (labeled, failures), both in corpus order.

    With a journal, each label is appended as soon as it exists, and records already in the journal
    (same record, prompt, filter and oracle) are taken from it: a killed run resumes where it stopped.
    A reply that fails validation is asked again up to `parse_retries` times; what still fails is a
    failure with its reason and raw text. Failures are not journaled: the next run tries them again.
    Raises BudgetExceeded when the budget stopped the engine, after journaling all that was done.
    """
    from tqdm import tqdm

    results, todo, keys = _journal_split(records, engine, prompt, filt, journal)
    engine.stats.journal_hits += len(records) - len(todo)
    # Similar lengths batch together, so a local model's batch pads little (results go back in corpus order).
    todo.sort(key=lambda r: len(subject_text(r)) + len(render_context(r, engine.spec.context_chars)))
    with tqdm(total=len(records), initial=len(records) - len(todo), desc=desc, unit="rec",
              disable=None, mininterval=2) as bar:
        for attempt in range(parse_retries + 1):
            again = []
            for record, labeled, failure in label_replies(todo, engine, prompt, filt, attempt):
                if failure and failure["stage_reason"] == "parse_failed" and attempt < parse_retries:
                    again.append(record)
                    continue
                results[record["id"]] = {"labeled": labeled} if labeled else {"failure": failure}
                if journal and labeled:
                    journal.append(keys[record["id"]], results[record["id"]])
                bar.update(1)
            todo = again
    stopped = [f for f in (e.get("failure") for e in results.values()) if f and f["stage_reason"] == "budget"]
    if stopped:
        raise BudgetExceeded(f"{engine.stopped}; {len(stopped)} of {len(records)} records not labeled yet")
    labeled = [results[r["id"]]["labeled"] for r in records if "labeled" in results[r["id"]]]
    failures = [results[r["id"]]["failure"] for r in records if "failure" in results[r["id"]]]
    return labeled, failures
