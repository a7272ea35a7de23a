"""Mistral's chat API through the mistralai SDK (MISTRAL_API_KEY).

    oracle: {provider: mistral, model: mistral-large-latest}

Structured output is Mistral's JSON-schema response format.

Tool turns (complete_tools) use Mistral's tool calling, which takes OpenAI-format tools and messages
(a required call is Mistral's tool_choice "any").
Two differences are smoothed over: Mistral accepts only tool call ids of exactly 9 letters or digits
(ids from another model are mapped to such ids, the same way in the call and in its result), and its
reply's arguments may be an object (they are returned as a JSON string, as the record contract says).
"""
from __future__ import annotations

import json
import re

from distillery.providers.base import Completion, HostedProvider, classify, import_sdk
from distillery.providers.toolproto import call_id

MISTRAL_ID = re.compile(r"[A-Za-z0-9]{9}")


class MistralProvider(HostedProvider):
    name = "mistral"
    key_var, sdk_module, pip_name = "MISTRAL_API_KEY", "mistralai", "mistralai"

    def connect(self, sdk, key, timeout_s):
        client_cls = getattr(sdk, "Mistral", None) or import_sdk("mistralai.client", "mistralai", self.name).Mistral
        # The SDK retries only when given a retry_config; none is given, so the engine owns retries.
        return client_cls(api_key=key, server_url=self.base_url, timeout_ms=int(timeout_s * 1000))

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens,
                                    "random_seed": seed}.items() if v is not None}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        try:
            reply = self.client.chat.complete(model=self.model, messages=messages, **kwargs)
            choice = reply.choices[0]
            text = choice.message.content if isinstance(choice.message.content, str) else "".join(
                getattr(part, "text", "") for part in choice.message.content or [])
        except Exception as exc:  # noqa: BLE001 - every SDK error (and a body it could not parse) becomes a ProviderError
            raise classify(exc, self.name) from exc
        return Completion(text, reply.usage.prompt_tokens or 0, reply.usage.completion_tokens or 0,
                          self.name, self.model, meta={"finish_reason": str(choice.finish_reason)})

    def complete_params(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> dict:
        """One request's body as a batch line carries it (the model is named on the batch job)."""
        params = {"messages": messages, **{k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens,
                                                             "random_seed": seed}.items() if v is not None}}
        if schema is not None:
            params["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        return params

    def tools_params(self, messages, tools, *, temperature=None, max_tokens=None, seed=None, tool_choice="auto"):
        return {**self.complete_params(mistral_ids(messages), temperature=temperature, max_tokens=max_tokens,
                                       seed=seed), "tools": tools,
                "tool_choice": "any" if tool_choice == "required" else tool_choice}

    def read_body(self, body: dict) -> Completion:
        from distillery.providers.openai_compat import chat_completion

        return chat_completion(body, self.name, self.model)

    def batch_api(self):
        from distillery.providers.file_batches import MistralBatches

        return MistralBatches(self)

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens,
                                    "random_seed": seed}.items() if v is not None}
        try:
            reply = self.client.chat.complete(model=self.model, messages=mistral_ids(messages), tools=tools,
                                              tool_choice="any" if tool_choice == "required" else tool_choice,
                                              **kwargs)
            choice = reply.choices[0]
            text = choice.message.content if isinstance(choice.message.content, str) else "".join(
                getattr(part, "text", "") for part in choice.message.content or [])
            calls = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": c.function.arguments if isinstance(c.function.arguments, str)
                else json.dumps(c.function.arguments)}} for c in choice.message.tool_calls or []]
        except Exception as exc:  # noqa: BLE001 - every SDK error (and a body it could not parse) becomes a ProviderError
            raise classify(exc, self.name) from exc
        return Completion(text, reply.usage.prompt_tokens or 0, reply.usage.completion_tokens or 0,
                          self.name, self.model, meta={"finish_reason": str(choice.finish_reason)},
                          tool_calls=calls or None)


def mistral_ids(messages: list[dict]) -> list[dict]:
    """The messages with every tool call id Mistral would reject replaced by a 9-character one derived
    from it, so a call and its result still pair up. Ids that already fit are kept."""
    def fix(i):
        return i if i is None or MISTRAL_ID.fullmatch(i) else call_id(i)

    out = []
    for m in messages:
        m = dict(m)
        if m.get("tool_calls"):
            m["tool_calls"] = [dict(c, id=fix(c.get("id"))) for c in m["tool_calls"]]
        if m.get("tool_call_id"):
            m["tool_call_id"] = fix(m["tool_call_id"])
        out.append(m)
    return out
