"""The one interface every LLM implements.

    complete(messages, *, temperature, max_tokens, seed) -> Completion
    score(messages, *, fields, low, high) -> Completion with .scores   (only where supports_score)

A provider is one small module; its SDK is imported inside it, lazily, so importing distillery
stays fast and a provider you do not use needs nothing installed.
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass, field


class ProviderError(RuntimeError):
    """A provider failed in a way that is worth retrying (overload, timeout, transient error)."""


@dataclass
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    provider: str
    model: str
    scores: dict[str, float] | None = None  # score(): expected value per field
    meta: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Completion":
        return cls(**d)


class Provider:
    name = "base"
    supports_score = False

    def __init__(self, model: str, base_url: str | None = None):
        self.model = model
        self.base_url = base_url

    def complete(self, messages: list[dict], *, temperature: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None) -> Completion:
        raise NotImplementedError

    def complete_batch(self, batch: list[list[dict]], *, temperature: float | None = None,
                       max_tokens: int | None = None, seeds: list[int] | None = None) -> list[Completion]:
        """Several independent completions; providers that can batch on device override this."""
        seeds = seeds or [None] * len(batch)
        return [self.complete(m, temperature=temperature, max_tokens=max_tokens, seed=s)
                for m, s in zip(batch, seeds)]

    def score(self, messages: list[dict], *, fields: list[str], low: float, high: float) -> Completion:
        raise NotImplementedError(f"provider {self.name!r} cannot read token probabilities")

    def score_batch(self, batch: list[list[dict]], *, fields: list[str], low: float, high: float) -> list[Completion]:
        return [self.score(m, fields=fields, low=low, high=high) for m in batch]


# name -> "module:Class"; modules are imported only when the provider is asked for.
REGISTRY = {
    "local": "distillery.providers.local:LocalProvider",
    "fake": "distillery.providers.fake:FakeProvider",
}


def get_provider(name: str, model: str, base_url: str | None = None, **options) -> Provider:
    """A provider by name; `options` are provider-specific (the local provider's dtype)."""
    if name not in REGISTRY:
        raise ValueError(f"unknown provider {name!r}; available: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)(model=model, base_url=base_url, **options)
