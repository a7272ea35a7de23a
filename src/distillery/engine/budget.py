"""Tokens, cost and the budget: what a stage spent, by provider, and the call that would pass the cap.

A call reserves the most it can cost (prompt estimate + max_tokens at its model's price) before it is
sent, and settles at what it really cost when it returns, so concurrent calls can never together pass
the budget. A priced model is one with a row in base.prices; a provider that is free (local, fake)
needs none, and a budget over a model with no price cannot be enforced (the stage says so).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

from distillery.engine.requests import BudgetExceeded, prompt_chars
from distillery.providers.base import SetupError


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
    batches: int = 0  # vendor batches submitted (their answered requests count in calls, at the batch price)
    by_provider: dict = field(default_factory=dict)
    unpriced: set = field(default_factory=set)
    notices: set = field(default_factory=set)  # what a provider changed on the way (e.g. a JSON-mode fallback)

    def as_metrics(self) -> dict:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "journal_hits": self.journal_hits,
                "retries": self.retries, "call_failures": self.failures, "fallbacks": self.fallbacks,
                "input_tokens": self.input_tokens, "output_tokens": self.output_tokens,
                "cost_usd": round(self.cost_usd, 6), "rate_limit_wait_s": round(self.rate_limit_wait_s, 2),
                "by_provider": self.by_provider, "unpriced_models": sorted(self.unpriced),
                "notices": sorted(self.notices), **({"batches": self.batches} if self.batches else {})}

    def progress(self) -> str:
        """The progress bar's tail: calls and cache hits, then what else the engine did, once it happens."""
        events = [(self.retries, f"{self.retries} retried"), (self.fallbacks, f"{self.fallbacks} fallbacks"),
                  (self.rate_limit_wait_s >= 1, f"waited {self.rate_limit_wait_s:.0f}s for rate limits"),
                  (self.failures, f"{self.failures} failed"), (self.cost_usd, f"${self.cost_usd:.4f}")]
        return ", ".join([f"{self.calls} calls", f"{self.cache_hits} cached"] + [text for on, text in events if on])

    def summary(self) -> str:
        """The stage's last line: where every result came from, and what it cost."""
        return (f"{self.calls} model calls, {self.cache_hits} cache hits, {self.journal_hits} from the journal, "
                f"{self.retries} retries, {self.fallbacks} fallbacks, ${self.cost_usd:.4f}")


class BudgetMeter:
    def __init__(self, prices: dict, budget_usd: float | None, stats: CallStats, batch_discount: float = 0.5):
        self.prices, self.budget_usd, self.stats = prices, budget_usd, stats
        self.batch_discount = batch_discount
        self.stopped: str | None = None  # why no more calls are made (the budget)
        self._reserved = 0.0
        self._lock = threading.Lock()

    def cost(self, model: str, input_tokens: int, output_tokens: int, batch: bool = False) -> float:
        """USD at the model's price; `batch`: its batch price (batch_input / batch_output where base.prices
        gives them, else the live price times base.batch_discount)."""
        price = self.prices.get(model)
        if price is None:
            return 0.0
        if not batch:
            return (input_tokens * price.input + output_tokens * price.output) / 1e6
        p_in = price.batch_input if price.batch_input is not None else price.input * self.batch_discount
        p_out = price.batch_output if price.batch_output is not None else price.output * self.batch_discount
        return (input_tokens * p_in + output_tokens * p_out) / 1e6

    def priced(self, member) -> bool:
        return member.provider.free or member.spec.model in self.prices

    def check_priced(self, members) -> None:
        """A budget over a hosted model with no price cannot be kept: refuse to start, naming it."""
        unpriced = [m.spec.model for m in members if not self.priced(m)]
        if self.budget_usd is not None and unpriced:
            raise SetupError(f"a budget of ${self.budget_usd:g} cannot be kept: no price for {', '.join(unpriced)} "
                             "in base.prices (USD per million tokens)")

    def estimate(self, member, requests: list) -> dict:
        """The most `requests` can cost on `member`: input estimated at 4 characters a token, output at
        each request's maximum (an upper bound)."""
        tokens_in = sum(prompt_chars(r.messages) // 4 for r in requests)
        tokens_out = sum(r.output_tokens_max() for r in requests)
        model = member.spec.model
        return {"provider": member.label, "calls": len(requests), "input_tokens": tokens_in,
                "output_tokens_max": tokens_out, "priced": self.priced(member),
                "cost_usd_max": round(self.cost(model, tokens_in, tokens_out, batch=member.spec.batch), 4),
                "cost_usd_max_live": round(self.cost(model, tokens_in, tokens_out), 4),
                "cost_usd_max_batch": round(self.cost(model, tokens_in, tokens_out, batch=True), 4),
                "batch": member.spec.batch}

    def reserve(self, member, est_in: int, est_out: int, batch: bool = False) -> float:
        """Set aside the most this call can cost; raise BudgetExceeded if that would pass the budget."""
        est = self.cost(member.spec.model, est_in, est_out, batch)
        with self._lock:
            if self.stopped:
                raise BudgetExceeded(self.stopped)
            if self.budget_usd is not None and self.stats.cost_usd + self._reserved + est > self.budget_usd:
                self.stopped = (f"budget of ${self.budget_usd:g} reached (${self.stats.cost_usd:.4f} spent, "
                                f"next call up to ${est:.4f})")
                raise BudgetExceeded(self.stopped)
            self._reserved += est
        return est

    def settle(self, member, completion, reserved: float, waited_s: float = 0.0, batch: bool = False) -> None:
        """Release the reservation; count an answered call's tokens and cost."""
        with self._lock:
            self._reserved -= reserved
            if completion is None:
                return
            s, c = self.stats, completion
            cost = self.cost(member.spec.model, c.input_tokens, c.output_tokens, batch)
            if not self.priced(member):
                s.unpriced.add(member.spec.model)
            s.calls += 1
            s.notices.update(getattr(member.provider, "notes", ()))
            s.input_tokens += c.input_tokens
            s.output_tokens += c.output_tokens
            s.cost_usd += cost
            s.rate_limit_wait_s += waited_s
            row = s.by_provider.setdefault(member.label, {"calls": 0, "input_tokens": 0, "output_tokens": 0,
                                                          "cost_usd": 0.0})
            row["calls"] += 1
            row["input_tokens"] += c.input_tokens
            row["output_tokens"] += c.output_tokens
            row["cost_usd"] = round(row["cost_usd"] + cost, 6)

    def count(self, **increments) -> None:
        """Add to the plain counters (retries, failures, fallbacks, cache_hits) from any thread."""
        with self._lock:
            for name, n in increments.items():
                setattr(self.stats, name, getattr(self.stats, name) + n)
