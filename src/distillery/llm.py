"""The call engine: every LLM call of every stage goes through here.

It adds, in one place: the content-addressed cache (a rerun pays nothing), retries with exponential
backoff and jitter, and token / call / cache-hit accounting for the stage's metrics. A call that still
fails after its retries raises CallFailed, which the stage records; nothing is dropped silently.
"""
from __future__ import annotations

import random
import time
from dataclasses import dataclass, field
from pathlib import Path

from distillery.cache import CallCache, content_key
from distillery.params import ModelSpec
from distillery.providers import Completion, Provider, get_provider


class CallFailed(RuntimeError):
    pass


@dataclass
class CallStats:
    calls: int = 0  # requests that reached the model
    cache_hits: int = 0
    journal_hits: int = 0  # records a resumed stage took from its journal, without any call
    retries: int = 0
    failures: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    by_model: dict = field(default_factory=dict)

    def as_metrics(self) -> dict:
        return {"calls": self.calls, "cache_hits": self.cache_hits, "journal_hits": self.journal_hits,
                "retries": self.retries,
                "call_failures": self.failures, "input_tokens": self.input_tokens,
                "output_tokens": self.output_tokens}


class Engine:
    def __init__(self, spec: ModelSpec, cache: CallCache, *, max_retries: int = 2,
                 provider: Provider | None = None, backoff_s: float = 0.5):
        self.spec = spec
        self.cache = cache
        self.max_retries = max_retries
        self.backoff_s = backoff_s
        options = {"dtype": spec.dtype} if spec.provider == "local" else {}
        self.provider = provider or get_provider(spec.provider, spec.model, spec.base_url, **options)
        self.stats = CallStats()

    @classmethod
    def for_stage(cls, spec: ModelSpec, state_dir: str | Path, **kw) -> "Engine":
        return cls(spec, CallCache(Path(state_dir) / "cache.sqlite"), **kw)

    def _key(self, kind: str, messages, **opts) -> str:
        return content_key(provider=self.spec.provider, model=self.spec.model, base_url=self.spec.base_url,
                           dtype=self.spec.dtype, kind=kind, messages=messages, **opts)

    def _with_retries(self, fn):
        for attempt in range(self.max_retries + 1):
            try:
                return fn()
            except (NotImplementedError, FileNotFoundError, ValueError, TypeError):
                raise  # a bug or a setup problem: retrying cannot help
            except Exception as exc:  # noqa: BLE001 - provider errors are many and vendor-specific
                if attempt == self.max_retries:
                    raise CallFailed(f"{type(exc).__name__}: {exc}") from exc
                self.stats.retries += 1
                time.sleep(self.backoff_s * 2 ** attempt * (0.5 + random.random()))

    def _account(self, c: Completion) -> None:
        self.stats.calls += 1
        self.stats.input_tokens += c.input_tokens
        self.stats.output_tokens += c.output_tokens

    def _batched(self, kind: str, batch: list[list[dict]], opts: list[dict], run) -> list[Completion | CallFailed]:
        """Answer from the cache where possible; send the rest in one provider batch; cache each answer."""
        keys = [self._key(kind, m, **o) for m, o in zip(batch, opts)]
        results: list[Completion | CallFailed | None] = []
        for key in keys:
            hit = self.cache.get(key)
            results.append(Completion.from_dict(hit) if hit else None)
        self.stats.cache_hits += sum(r is not None for r in results)
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            try:
                fresh = self._with_retries(lambda: run([batch[i] for i in todo], [opts[i] for i in todo]))
            except CallFailed as exc:
                if len(todo) == 1:
                    fresh = [exc]
                else:
                    # The batch failed as a whole: try each row once, so one bad prompt costs only itself.
                    fresh = [self._single(run, batch[i], opts[i]) for i in todo]
            self.stats.failures += sum(isinstance(c, CallFailed) for c in fresh)  # once per prompt, not per try
            for i, c in zip(todo, fresh):
                if isinstance(c, Completion):
                    self._account(c)
                    self.cache.put(keys[i], c.to_dict())
                results[i] = c
        return results

    def _single(self, run, messages, opts):
        try:
            return run([messages], [opts])[0]
        except Exception as exc:  # noqa: BLE001
            return CallFailed(f"{type(exc).__name__}: {exc}")

    def complete_many(self, batch: list[list[dict]], *, temperature: float | None = None,
                      max_tokens: int | None = None, samples: list[int] | None = None):
        """Completions for several prompts; `samples` tells apart repeated draws of the same prompt."""
        t = self.spec.temperature if temperature is None else temperature
        mt = self.spec.max_tokens if max_tokens is None else max_tokens
        opts = [{"temperature": t, "max_tokens": mt, "sample": s} for s in (samples or [0] * len(batch))]

        def run(msgs, os_):
            return self.provider.complete_batch(msgs, temperature=t, max_tokens=mt,
                                                seeds=[o["sample"] for o in os_])
        return self._batched("complete", batch, opts, run)

    def complete(self, messages, **kw) -> Completion:
        result = self.complete_many([messages], **kw)[0]  # a failure is counted once, in _batched
        if isinstance(result, CallFailed):
            raise result
        return result

    def score_many(self, batch: list[list[dict]], *, fields: list[str], low: float, high: float):
        opts = [{"fields": fields, "low": low, "high": high}] * len(batch)

        def run(msgs, _):
            return self.provider.score_batch(msgs, fields=fields, low=low, high=high)
        return self._batched("score", batch, opts, run)
