"""The one resumable job every LLM stage runs: an LLM over records, journaled, within a budget.

A stage describes its job (a `Job`): the key of a record's result, the request to send for an attempt
and how to read the reply. `JobRunner` does the rest, the same way for every stage:
- each record's result is keyed on what decides it (the record, the prompt, the knobs, the model
  spec); a result already in the journal is taken from it, so a run killed with `kill -9` resumes
  where it stopped and pays only for what was on the wire;
- the requests still to send go through the engine (cache, retries, limiter, budget);
- a reply the job rejects is asked again with a new attempt number (a new sample) up to max_attempts;
  then the job's `exhausted` decides (a failure, or a fallback value such as "keep the original");
- `plan()` builds the very requests a run would send and counts journal and cache hits: `--dry-run`;
- the budget stops the run cleanly: what settled is journaled, then BudgetStop is raised (exit 3).
Failures are returned, never journaled, so the next run tries them again.

    class Shout(Job):                     # a toy stage: the prompt, the parser, nothing else
        name, max_attempts = "shout", 2
        def key(self, record): return {"record": record}
        def request(self, record, attempt): return CompleteRequest([...], 0.0, 20, sample=attempt)
        def parse(self, record, reply, attempt): return Accept({"text": reply.text.upper()})
"""
from __future__ import annotations

import json
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from distillery.engine.cache import content_key
from distillery.engine.requests import BudgetExceeded, CallFailed
from distillery.providers.base import SetupError


@dataclass
class Accept:
    value: dict  # the record's result: journaled and returned


@dataclass
class Reject:
    reason: str  # a category a metric can count: too_short, templated, parse_failed, call_failed, …
    detail: str = ""
    raw: str | None = None  # the reply text, kept with a failure for a person to read

    def as_dict(self) -> dict:
        return {"reason": self.reason, "detail": self.detail}


@dataclass
class Failure:
    """A record the job could not do, with why (structured, not a "category: detail" string)."""
    id: str
    reason: str
    detail: str
    raw: str | None = None
    attempts: int = 0

    def to_record(self) -> dict:
        row = {"id": self.id, "stage_reason": self.reason, "error": self.detail}
        if self.raw is not None:
            row["raw"] = self.raw
        return row


class BudgetStop(Exception):
    """The budget stopped the run; everything that settled before it is journaled."""


class Job:
    """What a stage supplies. Override key, request and parse; the rest has defaults."""
    name = "job"
    max_attempts = 1
    first_attempt = 1  # the attempt number (sample index) of the first request
    wave_size: int | None = None  # records per wave; waves run in order (for jobs whose prompts use state)

    def key(self, record: dict) -> dict:
        raise NotImplementedError

    def request(self, record: dict, attempt: int):
        raise NotImplementedError

    def parse(self, record: dict, reply, attempt: int) -> Accept | Reject:
        raise NotImplementedError

    def call_failed(self, record: dict, error: CallFailed) -> Reject | Failure:
        """A call that failed after the engine's retries: a failure by default (not asked again)."""
        return Failure(record["id"], "call_failed", str(error))

    def accepted(self, record: dict, accept: Accept, rejections: list[Reject]) -> Accept:
        """The final value of an accepted result, knowing the replies rejected before it."""
        return accept

    def exhausted(self, record: dict, rejections: list[Reject]) -> Accept | Failure:
        last = rejections[-1]
        return Failure(record["id"], last.reason, last.detail, last.raw, len(rejections))

    def resumed(self, record: dict, value: dict) -> None:
        """A result taken from the journal (a job with state, e.g. recent rewrites, remembers it)."""

    def order(self, records: list[dict]) -> list[dict]:
        """The order to send the records in (results come back keyed, whatever the order)."""
        return records


@dataclass
class JobResult:
    values: dict[str, dict] = field(default_factory=dict)  # id -> accepted value, journaled or new
    failures: list[Failure] = field(default_factory=list)

    def in_order(self, records: list[dict]) -> tuple[list[dict], list[Failure]]:
        failed = {f.id: f for f in self.failures}
        return ([self.values[r["id"]] for r in records if r["id"] in self.values],
                [failed[r["id"]] for r in records if r["id"] in failed])


FLUSH_EVERY, FLUSH_AFTER_S = 100, 0.25  # journal writes (each one fsync) batch results; the cache has every answer


class JobRunner:
    def __init__(self, job: Job, engine, journal=None, progress: bool = True):
        self.job, self.engine, self.journal, self.progress = job, engine, journal, progress
        self._unwritten: list[tuple[str, dict]] = []
        self._flushed_at = time.monotonic()

    def _keys(self, records: list[dict]) -> dict[str, str]:
        """Each record's journal key (None without a journal: nothing is looked up or written)."""
        if self.journal is None:
            return {r["id"]: None for r in records}
        spec = self.engine.spec.identity()
        return {r["id"]: content_key(**self.job.key(r), spec=spec) for r in records}

    def _split(self, records: list[dict]):
        """(journal keys, results taken from the journal, records still to do)."""
        keys = self._keys(records)
        done = self.journal.load() if self.journal else {}
        resumed = {r["id"]: done[keys[r["id"]]] for r in records if keys[r["id"]] in done}
        return keys, resumed, [r for r in records if r["id"] not in resumed]

    def plan(self, records: list[dict]) -> dict:
        """The calls, tokens and cost a run would spend now, from the requests it would send first.
        A rejected reply costs up to max_attempts calls: calls_max and cost_usd_max bound the spend."""
        _, resumed, todo = self._split(records)
        est = self.engine.estimate([self.job.request(r, self.job.first_attempt) for r in todo])
        n = self.job.max_attempts
        return {"records": len(records), "journal_hits": len(resumed), **est, "calls_max": est["calls"] * n,
                **{k: round(est[k] * n, 4) for k in ("cost_usd_max", "cost_usd_max_live", "cost_usd_max_batch")},
                "output_tokens_max": est["output_tokens_max"] * n, "setup_problems": self.engine.setup_problems()}

    def run(self, records: list[dict]) -> JobResult:
        from tqdm import tqdm

        keys, resumed, todo = self._split(records)
        result = JobResult(values=dict(resumed))
        self.engine.stats.journal_hits += len(resumed)
        for r in records:
            if r["id"] in resumed:
                self.job.resumed(r, resumed[r["id"]])
        todo = self.job.order(todo)
        size = self.job.wave_size or max(1, len(todo))
        with tqdm(total=len(records), initial=len(resumed), desc=self.job.name, unit="rec",
                  disable=None if self.progress else True, mininterval=2) as bar:
            try:
                for start in range(0, len(todo), size):
                    self._wave(todo[start:start + size], keys, result, bar)
            finally:  # a budget stop or an error: what settled is journaled before it propagates
                self._flush()
        return result

    def _flush(self) -> None:
        if self.journal:
            self.journal.append_many(self._unwritten)
        self._unwritten, self._flushed_at = [], time.monotonic()

    def _wave(self, wave: list[dict], keys: dict, result: JobResult, bar) -> None:
        rejected: dict[str, list[Reject]] = {r["id"]: [] for r in wave}
        pending = wave
        for attempt in range(self.job.first_attempt, self.job.first_attempt + self.job.max_attempts):
            again, stopped = [], None
            for i, reply in self.engine.run([self.job.request(r, attempt) for r in pending]):
                record = pending[i]
                if isinstance(reply, BudgetExceeded):  # not made: neither a result nor a failure
                    stopped = reply
                    continue
                outcome = (self.job.call_failed(record, reply) if isinstance(reply, CallFailed)
                           else self.job.parse(record, reply, attempt))
                if isinstance(outcome, Reject):
                    rejected[record["id"]].append(outcome)
                    again.append(record)
                    continue
                if isinstance(outcome, Accept):
                    outcome = self.job.accepted(record, outcome, rejected[record["id"]])
                self._settle(record, outcome, keys, result, bar)
            if stopped is not None:
                raise BudgetStop(f"{stopped}; {len(records_left(result, keys))} of {len(keys)} records not done yet")
            pending = again
            if not pending:
                return
        for record in pending:
            self._settle(record, self.job.exhausted(record, rejected[record["id"]]), keys, result, bar)

    def _settle(self, record, outcome: Accept | Failure, keys, result: JobResult, bar) -> None:
        if isinstance(outcome, Accept):
            result.values[record["id"]] = outcome.value
            if self.journal is not None:
                self._unwritten.append((keys[record["id"]], outcome.value))
            if len(self._unwritten) >= FLUSH_EVERY or time.monotonic() - self._flushed_at >= FLUSH_AFTER_S:
                self._flush()
        else:
            result.failures.append(outcome)
        bar.set_postfix_str(self.engine.stats.progress(), refresh=False)
        bar.update(1)


def records_left(result: JobResult, keys: dict) -> list[str]:
    done = set(result.values) | {f.id for f in result.failures}
    return [rid for rid in keys if rid not in done]


def fresh(path) -> bool:
    """`path` exists and is not one the next `dvc repro` will rewrite (`make plan` names those), so a dry
    run may estimate from it."""
    stale = os.environ.get("DISTILLERY_PLAN_STALE", "").split(os.pathsep)
    return Path(path).exists() and str(path) not in stale


def add_dry_run(ap) -> None:
    """The flag every LLM stage takes; `make plan` runs each LLM stage's command with it."""
    ap.add_argument("--dry-run", action="store_true", help="print the plan (calls, tokens, cost); call nothing")
    ap.add_argument("--fallback-corpus", type=Path, help="a dry run whose --corpus will be rewritten first reads this")


def planned_corpus(args) -> tuple[Path, bool]:
    """(the corpus to read, whether it is the fallback): a dry run estimates from the fallback when the
    next `dvc repro` rewrites --corpus first (or it does not exist yet)."""
    use = args.dry_run and args.fallback_corpus is not None and not fresh(args.corpus)
    return (args.fallback_corpus, True) if use else (args.corpus, False)


def merge_plans(*plans: dict) -> dict:
    """Several jobs' plans of one stage as one (numbers added; the rest from the first that has it)."""
    out: dict = {}
    for plan in plans:
        for k, v in plan.items():
            if isinstance(v, (int, float)) and not isinstance(v, bool) and isinstance(out.get(k, 0), (int, float)):
                out[k] = round(out.get(k, 0) + v, 6)
            elif isinstance(v, list) and isinstance(out.get(k), list):
                out[k] = out[k] + [x for x in v if x not in out[k]]
            else:
                out.setdefault(k, v)
    return out


def print_plan(stage: str, plan: dict, **extra) -> None:
    print("PLAN " + json.dumps({"stage": stage, **extra, **plan}))


def run_job(runner: JobRunner, records: list[dict], knob: str = "budget_usd") -> JobResult:
    """runner.run(records) for a stage. The budget stops it with exit code 3 (all is journaled); a
    setup problem or a provider that refuses every call (a bad key, an unknown model, a dead server)
    stops it at once with exit code 2 and the whole reason."""
    try:
        return runner.run(records)
    except BudgetStop as exc:
        s = runner.engine.stats
        print(f"{runner.job.name}: stopped: {exc}. Spent ${s.cost_usd:.4f} in {s.calls} calls. Every result so "
              f"far is journaled: raise {knob}, or run again to spend another budget.")
        raise SystemExit(3) from None
    except SetupError as exc:
        print(f"{runner.job.name}: stopped: {exc}", file=sys.stderr)
        raise SystemExit(2) from None


def check_failures(stage: str, failed: int, total: int, max_rate: float, where) -> None:
    """After the outputs are written: more failures than `max_rate` of the records exits 4 (so the next
    `dvc repro` runs the stage again; the journal keeps what succeeded); fewer are reported with the
    command that retries them."""
    if not failed:
        return
    share = failed / max(1, total)
    line = f"{stage}: {failed} of {total} records failed ({share:.0%}; reasons in {where})"
    if share > max_rate:
        print(f"{line}: more than {stage}.max_failure_rate ({max_rate:.0%}). The outputs and journal are "
              f"kept; fix the cause, then `dvc repro` (or `dvc repro -f -s {stage}` if nothing it reads has "
              "changed since its last good run) sends only the failed records again.", file=sys.stderr)
        raise SystemExit(4)
    print(f"{line}. `dvc repro -f -s {stage}` tries them again (the journal keeps the rest).")
