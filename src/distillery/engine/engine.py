"""The call engine: every LLM call of every stage goes through here.

A thin composition of parts that each do one job and are tested alone:
- cache (cache.py): content-addressed; looked up in bulk, for every provider of the chain, before
  anything is dispatched, so cache hits never queue behind live calls;
- router (router.py): which chain member takes a call (fallback, or by capacity), with health;
- limiter (limiter.py) per member: rpm / tpm, Retry-After honoured;
- retry policy (retry.py): transient errors with backoff and jitter, then the next member;
- budget meter (budget.py): tokens and cost by provider, and the call that would pass the cap;
- dispatch (dispatch.py): threads for hosted providers, device batches for a local model.
A request is a typed value (requests.py); a failed one comes back as CallFailed, which the stage
records: nothing is dropped silently.
"""
from __future__ import annotations

import dataclasses

from distillery.engine.batch import BatchRunner
from distillery.engine.budget import BudgetMeter, CallStats
from distillery.engine.cache import CallCache, ChainCache, shared_cache_path
from distillery.engine.dispatch import run_device, run_threads
from distillery.engine.limiter import RateLimiter
from distillery.engine.remote import Ledger
from distillery.engine.requests import BudgetExceeded, CallFailed, CompleteRequest, prompt_chars
from distillery.engine.retry import NOT_RETRYABLE, RetryPolicy
from distillery.engine.router import Member, Router
from distillery.providers import Completion, ProviderError, provider_for  # noqa: F401 - Completion: the results
from distillery.providers.base import STOP_STATUS, SetupError, StageStop

# Calls in a row that failed with one and the same error: the stage stops rather than grind through every
# record. Few while nothing has answered yet (a wrong URL, a server not started); more once calls have
# succeeded (a server that died mid-run), since a short outage is retried past.
STOP_AFTER = 5
STOP_AFTER_ANSWERED = 20


def stop_message(member, exc, what: str, key: bool = True) -> str:
    """Which provider, where, what it said, and what to check: the key's variable by name."""
    where = member.spec.base_url or "its default endpoint"
    var = getattr(member.provider, "key_var", "") if key else ""
    head = f"{member.label} at {where} answered {exc}. " if exc is not None else f"{member.label} at {where}: "
    hint = f" (the key comes from {var}, in the environment or .env)" if var else ""
    return f"{head}{what[0].upper()}{what[1:]}{hint}."


class Engine:
    def __init__(self, spec, cache: CallCache, *, max_retries: int = 2, provider=None, backoff_s: float = 0.5,
                 prices: dict | None = None, budget_usd: float | None = None, batch_size: int = 16,
                 batch_discount: float = 0.5, ledger: Ledger | None = None):
        """`ledger`: where a stage records its vendor batches (needed when spec.batch is on)."""
        self.spec, self.batch_size, self.ledger = spec, batch_size, ledger
        specs = [spec, *spec.chain]
        self.members = [Member(s, provider if (i == 0 and provider) else provider_for(s),
                               RateLimiter(s.rpm, s.tpm), max(1, s.concurrency)) for i, s in enumerate(specs)]
        self.provider = self.members[0].provider
        self.cache = ChainCache(cache, self.members)
        self.router = Router(self.members, spec.routing)
        self.retry = RetryPolicy(max_retries, backoff_s)
        self.stats = CallStats()
        self.budget = BudgetMeter(prices or {}, budget_usd, self.stats, batch_discount)
        self.budget.check_priced(self.members)
        self.answered, self._in_row = False, []  # for stopping a stage whose calls all fail alike
        self.stop_reason: str | None = None

    @classmethod
    def for_stage(cls, spec, base, stage: str, batch: bool | None = None, **kw) -> "Engine":
        """The engine a stage uses: the repository's shared call cache, base.prices, the stage's ledger of
        vendor batches. `batch`: the stage's own switch (None: the spec's `batch`)."""
        if batch is not None and batch != spec.batch:
            spec = dataclasses.replace(spec, batch=batch)
        return cls(spec, CallCache(shared_cache_path(base.state_dir, base.cache_path)), prices=base.prices,
                   batch_discount=base.batch_discount, ledger=Ledger.for_stage(base.state_dir, stage, base.cache_path),
                   **kw)

    # --- one call that missed the cache ---------------------------------------------------------
    def call(self, request, tried: int = 0) -> Completion | CallFailed:
        """Send one request: router → budget → limiter → retries, then the next member of the chain.
        `tried`: attempts the first member already had (a device batch that failed as a whole)."""
        if self.stop_reason:  # another call found that every call will fail: send nothing more
            raise StageStop(self.stop_reason)
        est_in, est_out = prompt_chars(request.messages) // 4, request.output_tokens_max()
        errors, used, fatal, unreachable = [], set(), [], []
        while (picked := self.router.acquire(request, used, est_in + est_out)) is not None:
            member, start = picked
            used.add(member)
            try:
                reserved = self.budget.reserve(member, est_in, est_out)
            except BudgetExceeded as exc:
                self.router.release(member, None)
                return exc
            waited, first = [0.0], [start]

            def send():
                waited[0] += member.limiter.wait(first.pop()) if first else member.limiter.acquire(est_in + est_out)
                return request.send(member.provider, self.seed(member, request))

            try:
                completion = self.retry.call(send, limiter=member.limiter, on_retry=lambda: self.budget.count(retries=1),
                                             tried=tried if len(used) == 1 else 0)
            except NOT_RETRYABLE:
                self.budget.settle(member, None, reserved)
                self.router.release(member, None)
                raise  # a setup problem or a bug: no retry or fallback can help
            except ProviderError as exc:
                self.budget.settle(member, None, reserved)
                self.router.release(member, False)
                errors.append(f"{member.label}: {exc}")
                if exc.status in STOP_STATUS:  # a bad key or model: that member is out for the run
                    member.failures_in_row = float("inf")
                    fatal.append(stop_message(member, exc, STOP_STATUS[exc.status]))
                unreachable.append(exc.connection)
                continue
            self.answered, self._in_row = True, []
            self.budget.settle(member, completion, reserved, waited[0])
            self.router.release(member, True)
            self.cache.put(member, request, completion)
            if len(used) > 1:
                self.budget.count(fallbacks=1)
            return completion
        if fatal and len(fatal) == len(errors):  # every member refused for good: the stage cannot go on
            self.stop_reason = " ".join(fatal)
            raise StageStop(self.stop_reason)
        self.budget.count(failures=1)
        failed = CallFailed("; ".join(errors) or f"no provider in the chain can {request.kind}")
        self._in_row.append(str(failed))
        limit = STOP_AFTER_ANSWERED if self.answered else STOP_AFTER
        if len(self._in_row) >= limit and len(set(self._in_row[-limit:])) == 1:
            what = (f"{limit} calls in a row failed the same way after earlier ones were answered" if self.answered
                    else f"the first {limit} calls all failed the same way, none answered")
            down = bool(unreachable) and all(unreachable)
            check = "is the server running, and reachable at that URL" if down else "check the server, its base_url and the key"
            self.stop_reason = f"{what}: {failed}. " + stop_message(self.members[0], None, check, key=not down)
            raise StageStop(self.stop_reason)
        return failed

    def seed(self, member: Member, request) -> int:
        """The sampling seed of one request, from its own key: the same row draws the same text
        whichever rows share its batch, and after a resume."""
        return int(self.cache.key(member, request)[:8], 16) & 0x7FFFFFFF

    def _send_batch(self, requests: list) -> list[Completion] | None:
        member = self.members[0]
        try:
            replies = type(requests[0]).send_batch(member.provider, requests, [self.seed(member, r) for r in requests])
        except NOT_RETRYABLE:
            raise
        except Exception:  # noqa: BLE001 - the batch failed as a whole: each row is tried on its own
            self.budget.count(retries=len(requests))
            return None
        self.answered = True
        for request, reply in zip(requests, replies):
            self.budget.settle(member, reply, 0.0)
            self.cache.put(member, request, reply)
        return replies

    # --- many calls -----------------------------------------------------------------------------
    def run(self, requests: list):
        """Yield (index, Completion | CallFailed) for every request: cache hits first, then the rest
        as each call settles (not in order)."""
        hits = self.cache.lookup(requests)
        self.budget.count(cache_hits=len(hits))
        yield from hits.items()
        misses = [(i, r) for i, r in enumerate(requests) if i not in hits]
        if self.spec.batch and misses:
            yield from self.batches().run(misses)
        elif self.members[0].provider.batches_on_device:
            yield from run_device(misses, self._send_batch, self.call, self.batch_size)
        else:
            yield from run_threads(misses, self.call, self.router.workers())

    def batches(self) -> BatchRunner:
        """The vendor-batch dispatcher (spec.batch): made at the first batch, as it needs the SDK."""
        if getattr(self, "_batches", None) is None:
            if self.ledger is None:
                raise SetupError("batch: true needs the stage's ledger (Engine.for_stage)")
            self._batches = BatchRunner(self, self.ledger, poll_s=self.spec.batch_poll_s)
        return self._batches

    def one(self, request) -> Completion | CallFailed:
        """One request, from the cache or the provider, on the calling thread: for callers that run
        their own threads (a conversation that must wait for each reply before its next request).
        Always live, even with `batch` on: a batch round per turn would take a day a turn."""
        hit = self.cache.lookup([request])
        if hit:
            self.budget.count(cache_hits=1)
            return hit[0]
        return self.call(request)

    def workers(self) -> int:
        """How many calls may be in flight at once: the chain's concurrency."""
        return self.router.workers()

    def run_all(self, requests: list) -> list[Completion | CallFailed]:
        """run(), in request order."""
        results: list = [None] * len(requests)
        for i, r in self.run(requests):
            results[i] = r
        return results

    def estimate(self, requests: list) -> dict:
        """What run() would cost, without calling: cache hits, and the rest priced by the budget meter."""
        hits = self.cache.lookup(requests)
        return {"prompts": len(requests), "cache_hits": len(hits),
                **self.budget.estimate(self.members[0], [r for i, r in enumerate(requests) if i not in hits])}

    def setup_problems(self) -> list[str]:
        """What would stop the first call (a missing key or SDK), found without calling: for plans."""
        problems = [p for m in self.members if (p := getattr(m.provider, "setup_problem", lambda: None)())]
        if self.spec.batch and self.provider.batch_api() is None:
            problems.append(f"batch: true, but provider {self.spec.provider!r} has no batch API")
        return problems

    # --- conveniences ---------------------------------------------------------------------------
    def complete_request(self, messages, *, temperature=None, max_tokens=None, sample: int = 0,
                         schema=None) -> CompleteRequest:
        """A completion request with the spec's sampling unless given (0 is a value, not "unset")."""
        return CompleteRequest(messages, self.spec.temperature if temperature is None else temperature,
                               self.spec.max_tokens if max_tokens is None else max_tokens, sample, schema)

    def complete(self, messages, **kw) -> Completion:
        result = self.run_all([self.complete_request(messages, **kw)])[0]
        if isinstance(result, CallFailed):
            raise result
        return result
