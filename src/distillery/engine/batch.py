"""Batch dispatch: the calls that missed the cache, sent as vendor batches at the batch price.

    engine.run(requests)   # with spec.batch true, the misses go through BatchRunner.run

For every vendor the same way (the vendor adapters in providers/ know only their wire format):
- first, every batch this stage left open (a killed run, or one still running at the vendor) is waited
  for and collected: its results go to the call cache, so nothing it holds is ever submitted again;
- the requests still missing are deduplicated by cache key, which is also each request's custom_id,
  split by the vendor's request and byte limits, and each part is submitted once (remote.submit_once:
  the intent is recorded before create, the id after; a crash between them is reconciled with the
  vendor's list); the budget reserves each request's most cost at the batch price before it is sent;
- polled until ended; every result is cached under the same key a live call would use (switching
  `batch` off and on never pays twice), and matched to its requests by custom_id, never by order;
- requests that errored (retryably) or expired, or that a failed or cancelled batch never ran, go in the
  next batch, up to `max_retries` more rounds; then they come back as CallFailed with the vendor's reason.
  Replies cut off at max_tokens are results like any other: the stage records them as truncated.
"""
from __future__ import annotations

import hashlib
import time

from distillery.engine.remote import Ledger, adopt_or_abandon, crash_armed, crash_point, submit_once, wait
from distillery.engine.requests import BudgetExceeded, CallFailed, prompt_chars
from distillery.providers.base import STOP_STATUS, ProviderError, SetupError, StageStop
from distillery.providers.batching import STAGE_KEY, TAG_KEY, ItemError, line_bytes


class BatchRunner:
    def __init__(self, engine, ledger: Ledger, *, poll_s: float = 30.0, progress: bool = True):
        self.engine, self.ledger, self.poll_s, self.progress = engine, ledger, poll_s, progress
        self.member = engine.members[0]
        self.api = self.member.provider.batch_api()
        if self.api is None:
            raise SetupError(f"provider {self.member.spec.provider!r} has no batch API: set batch: false for it "
                             "(anthropic, openai_compat, together and mistral have one)")

    # --- the cycle ------------------------------------------------------------------------------
    def run(self, misses: list[tuple[int, object]]):
        """Yield (index, Completion | CallFailed | BudgetExceeded) for every (index, request). The stage's
        ledger is this process's alone meanwhile (another experiment at this stage waits, then finds the
        answers in the cache)."""
        with self.ledger.locked():
            yield from self._run(misses)

    def _run(self, misses):
        key = self.engine.cache.key
        by_key: dict[str, list[int]] = {}
        requests: dict[str, object] = {}
        for i, request in misses:
            k = key(self.member, request)
            by_key.setdefault(k, []).append(i)
            requests[k] = request
        found = self._collect_open()
        yield from self._answers(found, by_key)
        todo = [k for k in by_key if k not in found]
        reasons: dict[str, str] = {}
        rounds = 1 + self.engine.retry.max_retries
        for round_ in range(rounds):
            if not todo:
                return
            jobs, reserved, refused = self._submit(todo, requests, round_)
            for k, exc in refused.items():
                for i in by_key[k]:
                    yield i, exc
            again: list[str] = []
            settled: dict[str, object] = {}

            def ended(tag, batch_id, status):
                replies = self._collect(tag, batch_id, status, reserved, jobs[tag])
                for k in jobs[tag]:
                    reply = replies.get(k) or ItemError(  # a failed or cancelled batch never ran it: sent again
                        "missing", f"absent from the results ({status.state}{': ' + status.error if status.error else ''})")
                    if not isinstance(reply, ItemError):
                        settled[k] = reply
                        continue
                    reasons[k] = f"batch {batch_id}: {reply.kind}: {reply.detail}"
                    if reply.retryable:
                        again.append(k)
                    else:
                        settled[k] = CallFailed(reasons[k])

            def lost(tag, batch_id, why):
                self.ledger.write("abandoned", tag, why=why)
                for k in jobs[tag]:
                    reasons[k] = why
                    again.append(k)

            entries = self.ledger.entries()
            self._wait({tag: entries[tag]["id"] for tag in jobs}, ended, sum(map(len, jobs.values())), lost)
            yield from self._answers(settled, by_key)
            todo = again
        for k in todo:
            for i in by_key[k]:
                yield i, CallFailed(f"no result after {rounds} batches: {reasons[k]}")

    def _answers(self, replies: dict, by_key: dict):
        """(index, reply) for every request of this run that `replies` (key -> reply) answers."""
        for k, reply in replies.items():
            for i in by_key.get(k, ()):
                yield i, reply

    # --- submit ---------------------------------------------------------------------------------
    def _submit(self, keys: list[str], requests: dict, round_: int):
        """Submit `keys` in batches within the vendor's limits and the budget: ({tag: [keys]}, the
        reservation per key, {key: BudgetExceeded} for those the budget refused)."""
        parts, part, size = [], [], 0
        reserved: dict[str, float] = {}
        refused: dict[str, BudgetExceeded] = {}
        provider = self.member.provider
        for k in keys:
            request = requests[k]
            try:
                reserved[k] = self.engine.budget.reserve(self.member, prompt_chars(request.messages) // 4,
                                                         request.output_tokens_max(), batch=True)
            except BudgetExceeded as exc:
                refused[k] = exc
                continue
            line = self.api.line(k, request.wire(provider, self.engine.seed(self.member, request)))
            n = line_bytes(line)
            if part and (len(part) >= self.api.max_requests or size + n > self.api.max_bytes):
                parts.append(part)
                part, size = [], 0
            part.append((k, line))
            size += n
        if part:
            parts.append(part)
        jobs = {}
        for part in parts:
            ks = [k for k, _ in part]
            digest = hashlib.sha256("\n".join(ks).encode()).hexdigest()[:24]
            tag = f"{self.ledger.stage}-{digest}"
            meta = {STAGE_KEY: self.ledger.stage, TAG_KEY: tag}

            def create(lines=[line for _, line in part], meta=meta):
                return self.api.create(lines, meta)

            try:
                submit_once(self.ledger, tag, create, self._finder, kind="batch", vendor=self.api.vendor,
                            provider=self.member.spec.provider, base_url=self.member.spec.base_url,
                            model=self.member.spec.model, n=len(part), meta=meta, round=round_, since=time.time())
            except ProviderError as exc:
                check = STOP_STATUS.get(exc.status, "check the server, its base_url and the key")
                var = getattr(self.member.provider, "key_var", "")
                hint = f" (the key comes from {var}, in the environment or .env)" if var and exc.status in STOP_STATUS else ""
                raise StageStop(f"{self.member.label} at {self.member.spec.base_url or 'its default endpoint'} refused "
                                f"a batch of {len(part)} requests: {exc}. {check[0].upper()}{check[1:]}{hint}. Batches "
                                "already submitted are recorded; the next run collects them") from exc
            self.engine.budget.count(batches=1)
            jobs[tag] = ks
        return jobs, reserved, refused

    def _finder(self, job: dict) -> str | None:
        """The vendor's id of a batch this intent created (a kill came between create and record), never
        one the ledger already holds under another tag."""
        return self.api.find(job["meta"], job.get("since", job["at"]) - 5, job["n"], self.ledger.known_ids())

    # --- poll and collect -----------------------------------------------------------------------
    def _collect_open(self) -> dict:
        """Wait for and collect every batch of this stage left open: key -> Completion, for all of them."""
        open_ = {}
        spec = self.member.spec
        for job in self.ledger.open():
            if (job.get("provider"), job.get("base_url")) != (spec.provider, spec.base_url):
                continue  # another provider's or server's batch: collected when the stage uses it again
            batch_id = adopt_or_abandon(self.ledger, job, self._finder)
            if batch_id:
                open_[job["tag"]] = batch_id
        found: dict = {}
        if open_:
            print(f"{self.ledger.stage}: collecting {len(open_)} batch(es) left open by an earlier run")

            def ended(tag, batch_id, status):
                found.update((k, r) for k, r in self._collect(tag, batch_id, status, {}, ()).items()
                             if not isinstance(r, ItemError))

            entries = self.ledger.entries()
            self._wait(open_, ended, sum(entries[t].get("n", 0) for t in open_),
                       lambda tag, batch_id, why: self.ledger.write("abandoned", tag, why=why))
        return found

    def _wait(self, jobs: dict[str, str], ended, total: int, lost) -> None:
        wait(jobs, self.api.status, ended, poll_s=self.poll_s, describe=describe, total=total,
             name=f"{self.ledger.stage} batches", progress=self.progress, on_lost=lost)

    def _collect(self, tag: str, batch_id: str, status, reserved: dict, keys) -> dict:
        """Every result of an ended batch, cached (one transaction a thousand), then the ledger closed. A
        download cut off is started again (what was cached stays cached); after DOWNLOAD_TRIES the stage
        stops, and the next run collects the batch."""
        replies: dict[str, object] = {}
        stored: set[str] = set()
        every = 1 if crash_armed() else STORE_EVERY  # a crash test stores result by result
        for attempt in range(1, DOWNLOAD_TRIES + 1):
            pending: list = []
            try:
                for custom_id, reply in self.api.results(batch_id):
                    replies[custom_id] = reply
                    if not isinstance(reply, ItemError) and custom_id not in stored:
                        pending.append((custom_id, reply))
                        if len(pending) >= every:
                            self._store(pending, reserved, stored)
                            pending = []
                            crash_point("collecting", len(stored))
                self._store(pending, reserved, stored)
                break
            except Exception as exc:  # noqa: BLE001 - a torn download, a vendor restarting
                self._store(pending, reserved, stored)
                if attempt == DOWNLOAD_TRIES:
                    raise StageStop(f"could not download the results of batch {batch_id} ({type(exc).__name__}: "
                                    f"{exc}); it is recorded, and the next run collects it") from exc
                time.sleep(min(30.0, self.poll_s) * attempt)
        for k in keys:  # reserved and not answered: released
            if k in reserved:
                self.engine.budget.settle(self.member, None, reserved.pop(k), batch=True)
        counts = {kind: sum(isinstance(r, ItemError) and r.kind == kind for r in replies.values())
                  for kind in ("errored", "expired", "canceled")}
        self.ledger.write("closed", tag, id=batch_id, state=status.state, succeeded=len(stored), **counts)
        crash_point("closed")
        return replies

    def _store(self, pending: list, reserved: dict, stored: set) -> None:
        """Cache and count results; one cached already (a collection cut short and resumed) is not counted
        again: it was paid and counted by the run that cached it."""
        cached = self.engine.cache.cache.get_many([k for k, _ in pending])
        stored.update(cached)
        pending = [(k, reply) for k, reply in pending if k not in cached]
        self.engine.cache.cache.put_many([(k, reply.to_dict()) for k, reply in pending])
        for k, reply in pending:
            self.engine.budget.settle(self.member, reply, reserved.pop(k, 0.0), batch=True)
            stored.add(k)


DOWNLOAD_TRIES = 3
STORE_EVERY = 1000  # results cached per transaction


def describe(statuses: list) -> str:
    """The progress tail: batches running, results so far by kind, the vendor's ETA where it gives one."""
    counts: dict[str, int] = {}
    for s in statuses:
        for k, v in s.counts.items():
            counts[k] = counts.get(k, 0) + v
    running = sum(not s.ended for s in statuses)
    parts = [f"{running}/{len(statuses)} batches running"] + [f"{v} {k}" for k, v in counts.items() if v]
    etas = [s.eta_s for s in statuses if s.eta_s is not None and not s.ended]
    if etas:
        parts.append(f"vendor ETA {max(etas) / 60:.0f} min")
    return ", ".join(parts)
