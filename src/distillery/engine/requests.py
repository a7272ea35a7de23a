"""What a call asks for: one small typed value per kind of call.

A request carries everything that decides its answer, so its cache key, its device batch and its
cost estimate all come from it; nothing rides along in an untyped options dict. Two requests are
sent in one device batch only when `batch_options()` agree, so a batch never applies one request's
options to another.

    CompleteRequest(messages, temperature=0.9, max_tokens=40, sample=1)   # a text reply
    ScoreRequest(messages, fields=("relevance", "style"), low=0, high=10)  # expected scores (local)
    ToolTurnRequest(messages, tools, temperature=0.7, max_tokens=200)     # an assistant turn that may call tools
    ToolTurnRequest(messages, tools, 0.7, 200, tool_choice="required")     # ... that must call one
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import ClassVar


def prompt_chars(messages: list[dict]) -> int:
    return sum(len(str(m.get("content") or "")) for m in messages)


class CallFailed(RuntimeError):
    """A call that still failed after retries and every provider of the chain; the stage records it."""


class BudgetExceeded(CallFailed):
    """The budget would be passed by this call; it was not made. Not a failure of the record."""


@dataclass(frozen=True, eq=False)
class CompleteRequest:
    messages: list[dict]
    temperature: float
    max_tokens: int
    sample: int = 0  # tells apart repeated draws of one prompt (a retry asks for a new sample)
    schema: dict | None = None  # a JSON schema the reply must follow, where the provider can enforce one
    kind: ClassVar[str] = "complete"

    def key_parts(self) -> dict:
        parts = {"kind": self.kind, "messages": self.messages, "temperature": self.temperature,
                 "max_tokens": self.max_tokens, "sample": self.sample}
        if self.schema is not None:
            parts["schema"] = self.schema
        return parts

    def batch_options(self) -> tuple:
        return self.kind, self.temperature, self.max_tokens, json.dumps(self.schema, sort_keys=True)

    def output_tokens_max(self) -> int:
        return self.max_tokens

    def send(self, provider, seed: int):
        return provider.complete(self.messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                 seed=seed, schema=self.schema)

    def wire(self, provider, seed: int) -> dict:
        """The live call's parameters as the vendor's request body: one request of a vendor batch."""
        return provider.complete_params(self.messages, temperature=self.temperature, max_tokens=self.max_tokens,
                                        seed=seed, schema=self.schema)

    @staticmethod
    def send_batch(provider, requests: list["CompleteRequest"], seeds: list[int]):
        first = requests[0]
        return provider.complete_batch([r.messages for r in requests], temperature=first.temperature,
                                       max_tokens=first.max_tokens, seeds=seeds, schema=first.schema)


@dataclass(frozen=True, eq=False)
class ToolTurnRequest:
    """One assistant turn with tools on offer: the reply is text, tool calls, or both (OpenAI format).
    tool_choice "required": the reply must call a tool (each vendor's own switch; the text protocol
    starts the reply with `<tool_call>` where the provider continues a prefilled reply)."""
    messages: list[dict]
    tools: list[dict]
    temperature: float
    max_tokens: int
    sample: int = 0
    tool_choice: str = "auto"  # auto | required
    kind: ClassVar[str] = "tool_turn"

    def key_parts(self) -> dict:
        parts = {"kind": self.kind, "messages": self.messages, "tools": self.tools, "temperature": self.temperature,
                 "max_tokens": self.max_tokens, "sample": self.sample}
        if self.tool_choice != "auto":  # so the keys of every "auto" turn cached before it existed still hold
            parts["tool_choice"] = self.tool_choice
        return parts

    def batch_options(self) -> tuple:
        return self.kind, self.temperature, self.max_tokens, json.dumps(self.tools, sort_keys=True), self.tool_choice

    def output_tokens_max(self) -> int:
        return self.max_tokens

    def send(self, provider, seed: int):
        return provider.complete_tools(self.messages, self.tools, temperature=self.temperature,
                                       max_tokens=self.max_tokens, seed=seed, **self._choice())

    def wire(self, provider, seed: int) -> dict:
        return provider.tools_params(self.messages, self.tools, temperature=self.temperature,
                                     max_tokens=self.max_tokens, seed=seed, tool_choice=self.tool_choice)

    @staticmethod
    def send_batch(provider, requests: list["ToolTurnRequest"], seeds: list[int]):
        first = requests[0]
        return provider.complete_tools_batch([r.messages for r in requests], first.tools,
                                             temperature=first.temperature, max_tokens=first.max_tokens, seeds=seeds,
                                             **first._choice())

    def _choice(self) -> dict:
        # Passed only when not the default, so a provider written before tool_choice existed still works.
        return {} if self.tool_choice == "auto" else {"tool_choice": self.tool_choice}


@dataclass(frozen=True, eq=False)
class ScoreRequest:
    messages: list[dict]
    fields: tuple[str, ...]
    low: float
    high: float
    kind: ClassVar[str] = "score"

    def key_parts(self) -> dict:
        return {"kind": self.kind, "messages": self.messages, "fields": list(self.fields), "low": self.low,
                "high": self.high}

    def batch_options(self) -> tuple:
        return self.kind, self.fields, self.low, self.high

    def output_tokens_max(self) -> int:
        return len(self.fields)

    def send(self, provider, seed: int):
        return provider.score(self.messages, fields=list(self.fields), low=self.low, high=self.high)

    def wire(self, provider, seed: int) -> dict:
        raise NotImplementedError("score requests read token probabilities on this machine: no vendor batch")

    @staticmethod
    def send_batch(provider, requests: list["ScoreRequest"], seeds: list[int]):
        first = requests[0]
        return provider.score_batch([r.messages for r in requests], fields=list(first.fields), low=first.low,
                                    high=first.high)


Request = CompleteRequest | ScoreRequest | ToolTurnRequest
