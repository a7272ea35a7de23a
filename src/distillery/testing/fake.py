"""A provider for tests: queued responses, recorded calls, deterministic when the queue is empty.

With no queue (as inside a `dvc repro` run by the end-to-end test) it answers from a hash of the
prompt, so a rerun gives the same labels: text for complete(), JSON or scores for the oracle.
Model names ending in "-json" turn off score(), so the oracle's text-and-parse path is exercised.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time

from distillery.providers.base import Completion, Provider, ProviderError


class FakeProvider(Provider):
    name = "fake"
    batches_on_device = True  # answers a batch in-process, like the local model
    free = True

    @classmethod
    def from_spec(cls, spec) -> "FakeProvider":
        return cls(model=spec.model, base_url=spec.base_url)

    def __init__(self, model: str = "fake", base_url: str | None = None, responses: list | None = None):
        super().__init__(model, base_url)
        self.responses = list(responses or [])
        self.calls: list[dict] = []
        self.supports_score = not model.endswith("-json")
        # Tests that run in a subprocess (dvc repro) can make some calls fail through the environment.
        self.fail_marker = os.environ.get("DISTILLERY_FAKE_FAIL_ON")
        self.delay_s = float(os.environ.get("DISTILLERY_FAKE_DELAY", "0"))  # …or slow, to be killed mid-run

    def _rng(self, messages) -> random.Random:
        digest = hashlib.sha256(json.dumps(messages, sort_keys=True).encode()).hexdigest()
        return random.Random(int(digest[:16], 16))

    def _next(self, kind: str, messages, **kw):
        self.calls.append({"kind": kind, "messages": messages, **kw})
        time.sleep(self.delay_s)
        if self.fail_marker and any(self.fail_marker in str(m.get("content")) for m in messages):
            raise ProviderError(f"fake failure: prompt contains {self.fail_marker!r}")
        if self.responses:
            item = self.responses.pop(0)
            if isinstance(item, Exception):
                raise item
            return item
        return None

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        queued = self._next("complete", messages, temperature=temperature, max_tokens=max_tokens, seed=seed,
                            schema=schema)
        if queued is None:
            rng = self._rng([messages, seed])
            prompt = messages[-1]["content"]
            if "JSON" in prompt and "scores" in prompt:
                queued = json.dumps({"scores": {f: rng.randint(0, 10) for f in _fields(prompt)}})
            else:
                queued = f"Fake answer {rng.randrange(10**6)}: " + " ".join(
                    rng.choice(["sunny", "mild", "breezy", "pack", "an", "umbrella", "tomorrow", "clear"])
                    for _ in range(12))
        return Completion(queued, sum(len(m["content"] or "") for m in messages) // 4, len(queued) // 4,
                          self.name, self.model)

    def score(self, messages, *, fields, low, high) -> Completion:
        queued = self._next("score", messages, fields=fields, low=low, high=high)
        if queued is None:
            rng = self._rng(messages)
            queued = {f: round(rng.uniform(low, high), 3) for f in fields}
        return Completion(json.dumps(queued), sum(len(m["content"] or "") for m in messages) // 4,
                          len(fields), self.name, self.model, scores=dict(queued))


def _fields(prompt: str) -> list[str]:
    """The dimension names in the oracle's JSON reply format: `"name": <0-10>`."""
    return re.findall(r'"(\w+)": <', prompt) or ["score"]
