"""A provider for tests: queued responses, recorded calls, deterministic when the queue is empty.

With no queue (as inside a `dvc repro` run by the end-to-end test) it answers from a hash of the
prompt, so a rerun gives the same labels: text for complete(), JSON or scores for the oracle.
Model names ending in "-json" turn off score(), so the oracle's text-and-parse path is exercised.

complete_tools() plays a tool-using assistant: after a user message it calls one of the tools (picked by
the prompt's hash) with arguments from the tool's schema (an enum value, else a name from the user's
message, else "Paris"); after tool results it answers in a sentence that quotes them. A queued string is
read through the text tool protocol (distillery.providers.toolproto), so a test can script
`<tool_call>…</tool_call>` replies, malformed ones included; a queued Completion is returned as it is.
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import time

from distillery.providers import toolproto
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
            asked = re.findall(r'^\{"id": "([^"]+)"', prompt, flags=re.M)  # generate's scenario briefs
            if "JSON" in prompt and "scores" in prompt:
                queued = json.dumps({"scores": {f: rng.randint(0, 10) for f in _fields(prompt)}})
            elif asked:
                city = lambda: rng.choice(["Paris", "Oslo", "Lima", "Tokyo", "Cairo"])  # noqa: E731
                queued = json.dumps([{"id": sid, "situation": f"A trip to {city()} ({rng.randrange(10**6)})",
                                      "opening": f"What should I know about {city()} today? Ref {rng.randrange(10**6)}"}
                                     for sid in asked])
            else:
                queued = f"Fake answer {rng.randrange(10**6)}: " + " ".join(
                    rng.choice(["sunny", "mild", "breezy", "pack", "an", "umbrella", "tomorrow", "clear"])
                    for _ in range(12))
        return Completion(queued, sum(len(m["content"] or "") for m in messages) // 4, len(queued) // 4,
                          self.name, self.model)

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        queued = self._next("complete_tools", messages, tools=tools, temperature=temperature, max_tokens=max_tokens,
                            seed=seed, tool_choice=tool_choice)
        if isinstance(queued, Completion):
            return queued
        tokens_in = sum(len(str(m.get("content") or "")) for m in messages) // 4
        if queued is not None:
            raw = Completion(str(queued), tokens_in, len(str(queued)) // 4, self.name, self.model)
            return toolproto.completion_from_reply(raw, messages)
        rng = self._rng([messages, tools, seed])
        last = messages[-1] if messages else {}
        if tools and last.get("role") == "user":
            fn = rng.choice(tools)["function"]
            schema = fn.get("parameters") or {}
            props = schema.get("properties") or {}
            args = {key: _fake_argument(props.get(key) or {}, last.get("content") or "", rng)
                    for key in schema.get("required") or list(props)}
            arguments = json.dumps(args)
            call = {"id": toolproto.call_id(f"{len(messages)}:0:{fn['name']}:{arguments}"), "type": "function",
                    "function": {"name": fn["name"], "arguments": arguments}}
            return Completion("", tokens_in, len(arguments) // 4, self.name, self.model,
                              meta={"finish_reason": "tool_calls"}, tool_calls=[call])
        if last.get("role") == "tool":
            results = []
            for m in reversed(messages):
                if m["role"] != "tool":
                    break
                results.insert(0, f"{m.get('name') or 'the tool'} says {str(m.get('content'))[:120]}")
            text = f"Fake answer {rng.randrange(10**6)}: " + "; ".join(results) + "."
        else:
            text = f"Fake answer {rng.randrange(10**6)}: " + " ".join(
                rng.choice(["sunny", "mild", "breezy", "pack", "an", "umbrella", "tomorrow", "clear"]) for _ in range(8))
        return Completion(text, tokens_in, len(text) // 4, self.name, self.model, meta={"finish_reason": "stop"})

    def complete_tools_batch(self, batch, tools, *, temperature=None, max_tokens=None, seeds=None,
                             tool_choice="auto") -> list[Completion]:
        seeds = seeds or [None] * len(batch)  # row by row, so a row's reply does not depend on its batch
        return [self.complete_tools(m, tools, temperature=temperature, max_tokens=max_tokens, seed=s,
                                    tool_choice=tool_choice)
                for m, s in zip(batch, seeds)]

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


def _fake_argument(spec: dict, user_text: str, rng: random.Random):
    """A plausible value for one argument: an enum value, a number, else a name from the user's message."""
    if spec.get("enum"):
        return rng.choice(spec["enum"])
    if spec.get("type") == "integer":
        return rng.randint(1, 5)
    if spec.get("type") == "number":
        return round(rng.uniform(0, 10), 1)
    if spec.get("type") == "boolean":
        return rng.random() < 0.5
    names = [w for w in re.findall(r"[^\W\d_]+", user_text)[1:] if w[0].isupper()]
    return rng.choice(names) if names else "Paris"
