"""The call engine: every LLM call of every stage goes through here.

It adds, in one place:
- a content-addressed cache (a rerun pays nothing), looked up for every provider of the chain;
- concurrency for hosted providers (a thread pool) with a rate limiter per provider (rpm / tpm from
  params, Retry-After honoured), or device batches for the local model;
- retries of transient errors (429, 5xx, overloaded, timeouts, torn replies) with exponential backoff
  and jitter; a call that still fails goes to the next provider of the chain, then is returned as
  CallFailed, which the stage records: nothing is dropped silently;
- a provider chain: `fallback` (in order) or `round_robin` (spread calls, the others as fallbacks);
- tokens and cost per provider from the price table, and a budget: the call that would pass it is not
  made, and the stage stops with everything so far cached and journaled.
"""
from __future__ import annotations

import itertools
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from distillery.cache import CallCache, content_key
from distillery.params import BaseParams, ModelSpec, Price
from distillery.providers import Completion, Provider, ProviderError, get_provider
from distillery.providers.base import SetupError
from distillery.ratelimit import RateLimiter

DOWN_AFTER = 3  # calls in a row a chain member fails before the chain stops trying it first


class CallFailed(RuntimeError):
    pass


class BudgetExceeded(CallFailed):
    """The budget would be passed by this call; it was not made. Not a failure of the record."""


@dataclass
class CallStats:
    calls: int = 0  # requests that reached the model and were answered
    cache_hits: int = 0
    journal_hits: int = 0  # records a resumed stage took from its journal, without any call
    retries: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    fallbacks: int = 0  # calls answered by a chain member after an earlier one failed
    rate_limit_wait_s: float = 0.0
    by_provider: dict = field(default_factory=dict)
    unpriced: set = field(default_factory=set)

    def as_metrics(self) -> dict:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "journal_hits": self.journal_hits,
                "retries": self.retries, "call_failures": self.failures, "fallbacks": self.fallbacks,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 6), "rate_limit_wait_s": round(self.rate_limit_wait_s, 2),
                "by_provider": self.by_provider, "unpriced_models": sorted(self.unpriced)}


@dataclass
class Member:
    """One provider of the chain, with its own limiter and health."""
    spec: ModelSpec
    provider: Provider
    limiter: RateLimiter
    failures_in_row: int = 0

    @property
    def label(self) -> str:
        return f"{self.spec.provider}/{self.spec.model}"


def make_provider(spec: ModelSpec) -> Provider:
    if spec.provider == "local":
        return get_provider(spec.provider, spec.model, spec.base_url, dtype=spec.dtype)
    if spec.provider == "fake":
        return get_provider(spec.provider, spec.model, spec.base_url)
    return get_provider(spec.provider, spec.model, spec.base_url, timeout_s=spec.timeout_s)


class Engine:
    def __init__(self, spec: ModelSpec, cache: CallCache, *, max_retries: int = 2,
                 provider: Provider | None = None, backoff_s: float = 0.5, prices: dict[str, Price] | None = None,
                 budget_usd: float | None = None, batch_size: int = 16):
        self.spec = spec
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        self.prices = prices or {}
        self.budget_usd = budget_usd
        self.batch_size = batch_size
        specs = [spec, *spec.chain]
        self.members = [Member(s, provider if (i == 0 and provider) else make_provider(s), RateLimiter(s.rpm, s.tpm))
                        for i, s in enumerate(specs)]
        self.provider = self.members[0].provider
        self.stats = CallStats()
        self.stopped: str | None = None  # why the engine stopped making calls (the budget)
        self._lock = threading.Lock()
        self._reserved_usd = 0.0
        self._turn = itertools.count()

    @classmethod
    def for_stage(cls, spec: ModelSpec, base: BaseParams, **kw) -> "Engine":
        """The engine a stage uses: the shared cache in base.state_dir, base.prices."""
        return cls(spec, CallCache(Path(base.state_dir) / "cache.sqlite"), prices=base.prices, **kw)

    # --- cache ---------------------------------------------------------------------------------
    def _key(self, m: Member, kind: str, messages, opts: dict) -> str:
        s = m.spec
        return content_key(provider=s.provider, model=s.model, base_url=s.base_url, dtype=s.dtype,
                           kind=kind, messages=messages, **opts)

    def _cached(self, kind, messages, opts) -> Completion | None:
        for m in self.members:
            hit = self.cache.get(self._key(m, kind, messages, opts))
            if hit:
                return Completion.from_dict(hit)
        return None

    # --- cost and budget -----------------------------------------------------------------------
    def cost(self, model: str, input_tokens: int, output_tokens: int) -> float:
        price = self.prices.get(model)
        if price is None:
            return 0.0
        return (input_tokens * price.input + output_tokens * price.output) / 1e6

    def _reserve(self, m: Member, est_in: int, est_out: int) -> float:
        """Set aside the most this call can cost; refuse it if that would pass the budget."""
        est = self.cost(m.spec.model, est_in, est_out)
        with self._lock:
            if self.stopped:
                raise BudgetExceeded(self.stopped)
            if self.budget_usd is not None and self.stats.cost_usd + self._reserved_usd + est > self.budget_usd:
                self.stopped = (f"budget of ${self.budget_usd:g} reached (${self.stats.cost_usd:.4f} spent, "
                                f"next call up to ${est:.4f})")
                raise BudgetExceeded(self.stopped)
            self._reserved_usd += est
        return est

    def _settle(self, m: Member, c: Completion | None, reserved: float) -> None:
        with self._lock:
            self._reserved_usd -= reserved
            if c is None:
                return
            cost = self.cost(m.spec.model, c.input_tokens, c.output_tokens)
            if m.spec.model not in self.prices and m.spec.provider not in ("local", "fake"):
                self.stats.unpriced.add(m.spec.model)
            s = self.stats
            s.calls += 1
            s.input_tokens += c.input_tokens
            s.output_tokens += c.output_tokens
            s.cost_usd += cost
            row = s.by_provider.setdefault(m.label, {"calls": 0, "input_tokens": 0, "output_tokens": 0,
                                                     "cost_usd": 0.0})
            row["calls"] += 1
            row["input_tokens"] += c.input_tokens
            row["output_tokens"] += c.output_tokens
            row["cost_usd"] = round(row["cost_usd"] + cost, 6)

    # --- one call, with retries, limiter and the chain -----------------------------------------
    def _send(self, m: Member, kind: str, messages, opts: dict) -> Completion:
        if kind == "score":
            return m.provider.score(messages, fields=opts["fields"], low=opts["low"], high=opts["high"])
        return m.provider.complete(messages, temperature=opts["temperature"], max_tokens=opts["max_tokens"],
                                   seed=opts["sample"], schema=opts.get("schema"))

    def _attempts(self, m: Member, kind: str, messages, opts: dict, tried: int = 0) -> Completion:
        est_in = sum(len(str(x.get("content") or "")) for x in messages) // 4
        est_out = opts.get("max_tokens") or m.spec.max_tokens
        for attempt in range(min(tried, self.max_retries), self.max_retries + 1):
            reserved = self._reserve(m, est_in, est_out)
            waited = m.limiter.acquire(est_in + est_out)
            try:
                c = self._send(m, kind, messages, opts)
            except (SetupError, NotImplementedError, FileNotFoundError):
                self._settle(m, None, reserved)
                raise  # a setup problem or a bug: no retry or fallback can help
            except Exception as exc:  # noqa: BLE001 - local and fake raise plain errors; hosted ones ProviderError
                self._settle(m, None, reserved)
                err = exc if isinstance(exc, ProviderError) else ProviderError(f"{type(exc).__name__}: {exc}")
                if not err.retryable or attempt == self.max_retries:
                    raise CallFailed(str(err)) from exc
                with self._lock:
                    self.stats.retries += 1
                if err.retry_after:
                    m.limiter.pause(err.retry_after)  # the whole provider waits, not just this thread
                    time.sleep(err.retry_after)
                else:
                    time.sleep(self.backoff_s * 2 ** attempt * (0.5 + random.random()))
            else:
                self._settle(m, c, reserved)
                with self._lock:
                    self.stats.rate_limit_wait_s += waited
                return c

    def _route(self, kind: str) -> list[Member]:
        members = [m for m in self.members if kind != "score" or m.provider.supports_score]
        if self.spec.routing == "round_robin" and len(members) > 1:
            turn = next(self._turn) % len(members)
            members = members[turn:] + members[:turn]
        healthy = [m for m in members if m.failures_in_row < DOWN_AFTER]
        return healthy + [m for m in members if m.failures_in_row >= DOWN_AFTER]  # the down ones last

    def _call(self, kind: str, messages, opts: dict, tried: int = 0) -> Completion | CallFailed:
        """`tried`: attempts the first provider already had (a device batch that failed as a whole)."""
        hit = self._cached(kind, messages, opts)
        if hit:
            with self._lock:
                self.stats.cache_hits += 1
            return hit
        errors = []
        for n, m in enumerate(self._route(kind)):
            try:
                c = self._attempts(m, kind, messages, opts, tried if n == 0 else 0)
            except BudgetExceeded as exc:
                return exc
            except CallFailed as exc:
                m.failures_in_row += 1
                errors.append(f"{m.label}: {exc}")
                continue
            m.failures_in_row = 0
            self.cache.put(self._key(m, kind, messages, opts), c.to_dict())
            if n:
                with self._lock:
                    self.stats.fallbacks += 1
            return c
        with self._lock:
            self.stats.failures += 1
        return CallFailed("; ".join(errors) or f"no provider in the chain can {kind}")

    # --- a dry run ----------------------------------------------------------------------------
    def estimate(self, kind: str, batch: list[list[dict]], opts: list[dict]) -> dict:
        """What run() would cost, without calling: cache hits, calls, tokens (input estimated at 4
        characters a token, output at max_tokens: an upper bound) and cost at the primary's price."""
        m = self.members[0]
        todo = [(msgs, o) for msgs, o in zip(batch, opts) if self._cached(kind, msgs, o) is None]
        hits = len(batch) - len(todo)
        tokens_in = sum(sum(len(str(x.get("content") or "")) for x in msgs) // 4 for msgs, _ in todo)
        tokens_out = sum((o.get("max_tokens") or m.spec.max_tokens) if kind == "complete" else len(o["fields"])
                         for _, o in todo)
        return {"provider": m.label, "prompts": len(batch), "cache_hits": hits, "calls": len(todo),
                "input_tokens": tokens_in, "output_tokens_max": tokens_out,
                "cost_usd_max": round(self.cost(m.spec.model, tokens_in, tokens_out), 4),
                "priced": m.spec.model in self.prices or m.spec.provider in ("local", "fake")}

    # --- many calls ----------------------------------------------------------------------------
    def _device_batch(self, kind, batch, opts) -> list[Completion | CallFailed]:
        """A local model: one forward pass for the uncached rows; a row that fails goes through _call."""
        m = self.members[0]
        results = [self._cached(kind, msgs, o) for msgs, o in zip(batch, opts)]
        self.stats.cache_hits += sum(r is not None for r in results)
        todo = [i for i, r in enumerate(results) if r is None]
        if not todo:
            return results
        o = opts[0]  # one call kind and one set of options per device batch
        try:
            if kind == "score":
                fresh = m.provider.score_batch([batch[i] for i in todo], fields=o["fields"], low=o["low"],
                                               high=o["high"])
            else:
                fresh = m.provider.complete_batch([batch[i] for i in todo], temperature=o["temperature"],
                                                  max_tokens=o["max_tokens"], seeds=[opts[i]["sample"] for i in todo],
                                                  schema=o.get("schema"))
        except (SetupError, NotImplementedError, FileNotFoundError):
            raise
        except Exception:  # noqa: BLE001 - the batch failed as a whole: each row on its own, so one bad prompt costs only itself
            fresh = [None] * len(todo)
            self.stats.retries += len(todo)
        for i, c in zip(todo, fresh):
            if c is None:
                results[i] = self._call(kind, batch[i], opts[i], tried=1)
            else:
                self._settle(m, c, 0.0)
                self.cache.put(self._key(m, kind, batch[i], opts[i]), c.to_dict())
                results[i] = c
        return results

    def run(self, kind: str, batch: list[list[dict]], opts: list[dict]):
        """Yield (index, Completion | CallFailed) for every prompt, as each is settled (not in order)."""
        if self.members[0].provider.batches_on_device:
            for start in range(0, len(batch), self.batch_size):
                part = self._device_batch(kind, batch[start:start + self.batch_size], opts[start:start + self.batch_size])
                yield from ((start + j, r) for j, r in enumerate(part))
            return
        workers = max(1, self.spec.concurrency)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="llm") as pool:
            futures = {pool.submit(self._call, kind, msgs, o): i for i, (msgs, o) in enumerate(zip(batch, opts))}
            try:
                for f in as_completed(futures):
                    yield futures[f], f.result()
            finally:  # the consumer stopped early (an error, a kill): drop what has not started
                for f in futures:
                    f.cancel()

    def complete_opts(self, n: int, *, temperature=None, max_tokens=None, samples=None, schema=None) -> list[dict]:
        t = self.spec.temperature if temperature is None else temperature
        mt = self.spec.max_tokens if max_tokens is None else max_tokens
        base = {"temperature": t, "max_tokens": mt}
        if schema is not None:
            base["schema"] = schema
        return [{**base, "sample": s} for s in (samples or [0] * n)]

    def complete_many(self, batch: list[list[dict]], **kw) -> list[Completion | CallFailed]:
        """Completions for several prompts, in order; `samples` tells apart repeated draws of a prompt."""
        results: list = [None] * len(batch)
        for i, r in self.run("complete", batch, self.complete_opts(len(batch), **kw)):
            results[i] = r
        return results

    def complete(self, messages, **kw) -> Completion:
        result = self.complete_many([messages], **kw)[0]
        if isinstance(result, CallFailed):
            raise result
        return result

    def score_opts(self, n: int, *, fields: list[str], low: float, high: float) -> list[dict]:
        return [{"fields": fields, "low": low, "high": high}] * n

    def score_many(self, batch: list[list[dict]], **kw) -> list[Completion | CallFailed]:
        results: list = [None] * len(batch)
        for i, r in self.run("score", batch, self.score_opts(len(batch), **kw)):
            results[i] = r
        return results
