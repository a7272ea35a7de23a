"""The oracle: format a record into the prompt, get dimension scores, parse and validate them.

Formatting (`build_messages`) is separate from parsing (reply.py): a reply that does not parse
becomes a recorded failure with its raw text, never a crash and never a silent default. `OracleJob`
is the labeling job calibrate, validate and label run through the resumable job runner.
"""
from __future__ import annotations

import hashlib
import re
from pathlib import Path

from distillery.engine.job import Accept, Failure, Job, JobRunner, Reject
from distillery.engine.requests import CompleteRequest, ScoreRequest
from distillery.labeling.reply import ParseError, parse_scores, reply_schema, validate_scores
from distillery.params import FilterParams
from distillery.records import render_context, subject_text
from distillery.labeling.scoring import tier_of, weighted_score

RECORD_HEADING = "## Record"


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


def annotate(record: dict, labels: dict[str, float], filt: FilterParams, oracle: dict) -> dict:
    score = weighted_score(labels, filt)
    return {**record, "labels": labels, "score": score, "tier": tier_of(score, filt), "oracle": oracle}


MAX_LISTED = 20  # bad existing labels listed in one error message


def keep_existing_labels(numbered: list[tuple[int, dict]], filt: FilterParams, path, *,
                         relabel: bool = False) -> tuple[list[dict], list[dict]]:
    """(records whose `labels` are kept, scored and tiered like fresh ones; records the oracle must label).

    Existing labels are checked against the filter's reply contract; every bad one is listed (file,
    line, id, what is wrong), up to MAX_LISTED, in one error, so a user fixes them all in one pass."""
    kept, todo, bad = [], [], []
    for line, r in numbered:
        if "labels" not in r or relabel:
            todo.append(r)
            continue
        try:
            kept.append(annotate(r, validate_scores(r["labels"], filt), filt, r.get("oracle") or {"provider": "existing"}))
        except ParseError as exc:
            bad.append(f"{path}:{line}: record {r['id']!r}: labels: {exc}")
    if bad:
        more = f"\n… and {len(bad) - MAX_LISTED} more" if len(bad) > MAX_LISTED else ""
        raise ParseError(f"{len(bad)} record(s) arrive with labels that do not fit the filter "
                         f"(set label.relabel: true to have the oracle score them instead):\n"
                         + "\n".join(bad[:MAX_LISTED]) + more)
    return kept, todo


class OracleJob(Job):
    """Label records: the oracle's prompt for each, its reply read against the filter's contract.

    A local model is scored from its token probabilities (a ScoreRequest); a hosted one is asked for
    JSON against reply_schema(filt). A reply that fails the contract is asked again with a new sample
    (`parse_retries`); a reply cut off at max_tokens is recorded as truncated at once (asking again
    with the same limit would be cut off again)."""

    first_attempt = 0

    def __init__(self, prompt: OraclePrompt, filt: FilterParams, engine, *, parse_retries: int = 1,
                 name: str = "label"):
        self.prompt, self.filt, self.name = prompt, filt, name
        self.max_attempts = parse_retries + 1
        self.use_score = engine.provider.supports_score
        self.spec = engine.spec
        self.schema, self.filter_key = reply_schema(filt), repr(filt)  # once, not per record

    def key(self, record: dict) -> dict:
        return {"record": record, "prompt": self.prompt.hash, "filter": self.filter_key}

    def order(self, records: list[dict]) -> list[dict]:
        # Similar lengths batch together, so a local model's batch pads little.
        return sorted(records, key=lambda r: len(subject_text(r)) + len(render_context(r, self.spec.context_chars)))

    def request(self, record: dict, attempt: int):
        messages = build_messages(record, self.prompt, self.filt, json_reply=not self.use_score,
                                  context_chars=self.spec.context_chars)
        if self.use_score:
            return ScoreRequest(messages, tuple(self.filt.dimensions), self.filt.scale_min, self.filt.scale_max)
        return CompleteRequest(messages, self.spec.temperature, self.spec.max_tokens, attempt, self.schema)

    def parse(self, record: dict, reply, attempt: int):
        try:
            if self.use_score:
                labels, reasoning = validate_scores(reply.scores or {}, self.filt), "expected value over score tokens"
            else:
                labels, reasoning = parse_scores(reply.text, self.filt)
        except ParseError as exc:
            if reply.truncated:
                return Failure(record["id"], "truncated",
                               f"the reply was cut off at max_tokens={self.spec.max_tokens} ({exc}); raise "
                               "max_tokens in the oracle's spec (base.oracle.max_tokens)", reply.text)
            return Reject("parse_failed", str(exc), reply.text)
        oracle = {"provider": reply.provider, "model": reply.model, "prompt_hash": self.prompt.hash,
                  "reasoning": reasoning}
        return Accept(annotate(record, labels, self.filt, oracle))


def label_all(records: list[dict], engine, prompt: OraclePrompt, filt: FilterParams, *, journal=None,
              parse_retries: int = 1, desc: str = "label") -> tuple[list[dict], list[dict]]:
    """(labeled records, failure rows), both in corpus order: OracleJob through the job runner."""
    job = OracleJob(prompt, filt, engine, parse_retries=parse_retries, name=desc)
    labeled, failures = JobRunner(job, engine, journal).run(records).in_order(records)
    return labeled, [f.to_record() for f in failures]
