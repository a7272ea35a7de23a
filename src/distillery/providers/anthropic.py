"""Anthropic's Messages API (ANTHROPIC_API_KEY).

    oracle: {provider: anthropic, model: claude-sonnet-4-5, rpm: 50}

Structured output is a forced tool call: the reply schema is the tool's input schema and
tool_choice names the tool, so the model answers with arguments, not prose.
"""
from __future__ import annotations

import json

from distillery.providers.base import Completion, HostedProvider, classify

TOOL = "record_reply"


class AnthropicProvider(HostedProvider):
    name = "anthropic"
    key_var, sdk_module, pip_name = "ANTHROPIC_API_KEY", "anthropic", "anthropic"

    def connect(self, sdk, key, timeout_s):
        return sdk.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        system = "\n\n".join(m["content"] for m in messages if m["role"] == "system")
        chat = [{"role": m["role"], "content": m["content"]} for m in messages if m["role"] != "system"]
        # max_tokens is required by the API. temperature is not sent: Anthropic deprecated it (newer
        # models answer 400) and SDK 2.x no longer takes it; the sample index still keys the cache.
        kwargs = {"max_tokens": max_tokens if max_tokens is not None else 1024}
        if system:
            kwargs["system"] = system
        if schema is not None:
            kwargs["tools"] = [{"name": TOOL, "description": "Record the reply.", "input_schema": schema}]
            kwargs["tool_choice"] = {"type": "tool", "name": TOOL}
        try:
            reply = self.client.messages.create(model=self.model, messages=chat, **kwargs)
            tool = next((b for b in reply.content if b.type == "tool_use"), None)
            text = json.dumps(tool.input) if tool is not None else "".join(
                b.text for b in reply.content if b.type == "text")
        except Exception as exc:  # noqa: BLE001 - every SDK error (and a body it could not parse) becomes a ProviderError
            raise classify(exc, self.name) from exc
        return Completion(text, reply.usage.input_tokens, reply.usage.output_tokens, self.name, self.model,
                          meta={"finish_reason": reply.stop_reason})
