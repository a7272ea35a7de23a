"""Anthropic's Messages API (ANTHROPIC_API_KEY).

    oracle: {provider: anthropic, model: claude-sonnet-4-5, rpm: 50}

Structured output is a forced tool call: the reply schema is the tool's input schema and
tool_choice names the tool, so the model answers with arguments, not prose.

Tool turns (complete_tools) use Anthropic's own tool calling; the OpenAI-format history is converted on
the way out (see to_anthropic) and the reply's `tool_use` blocks come back as OpenAI `tool_calls`.
"""
from __future__ import annotations

import json

from distillery.providers.base import Completion, HostedProvider, classify
from distillery.providers.toolproto import is_error_result

TOOL = "record_reply"


class AnthropicProvider(HostedProvider):
    name = "anthropic"
    key_var, sdk_module, pip_name = "ANTHROPIC_API_KEY", "anthropic", "anthropic"

    def connect(self, sdk, key, timeout_s):
        return sdk.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        system, chat = to_anthropic(messages)
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

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        system, chat = to_anthropic(messages)
        kwargs = {"max_tokens": max_tokens if max_tokens is not None else 1024,  # temperature: see complete()
                  "tools": [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                             "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
                            for t in tools],
                  "tool_choice": {"type": "any" if tool_choice == "required" else "auto"}}
        if system:
            kwargs["system"] = system
        try:
            reply = self.client.messages.create(model=self.model, messages=chat, **kwargs)
            text = "".join(b.text for b in reply.content if b.type == "text")
            calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": json.dumps(b.input)}}
                     for b in reply.content if b.type == "tool_use"]
        except Exception as exc:  # noqa: BLE001 - every SDK error (and a body it could not parse) becomes a ProviderError
            raise classify(exc, self.name) from exc
        return Completion(text, reply.usage.input_tokens, reply.usage.output_tokens, self.name, self.model,
                          meta={"finish_reason": reply.stop_reason}, tool_calls=calls or None)


def to_anthropic(messages: list[dict]) -> tuple[str, list[dict]]:
    """OpenAI-format messages as (system, Anthropic messages). An assistant's `tool_calls` become `tool_use`
    blocks (after a text block when it also wrote text); consecutive `tool` messages become one user message
    of `tool_result` blocks, `is_error` when the result is the executor's {"error": …}. Arguments that are
    not a JSON object (a malformed call kept from another model) are sent as {"_raw_arguments": "…"},
    since Anthropic takes only an object as a tool's input."""
    system = "\n\n".join(m["content"] for m in messages if m["role"] == "system" and m.get("content"))
    chat: list[dict] = []
    for m in messages:
        role, content = m["role"], m.get("content")
        if role == "system":
            continue
        if role == "assistant" and m.get("tool_calls"):
            blocks = [{"type": "text", "text": content}] if content else []  # Anthropic rejects empty text blocks
            blocks += [{"type": "tool_use", "id": c["id"], "name": c["function"]["name"],
                        "input": _arguments_object(c["function"].get("arguments"))} for c in m["tool_calls"]]
            chat.append({"role": "assistant", "content": blocks})
        elif role == "tool":
            block = {"type": "tool_result", "tool_use_id": m["tool_call_id"], "content": str(content or ""),
                     "is_error": is_error_result(content)}
            if chat and chat[-1]["role"] == "user" and isinstance(chat[-1]["content"], list) and all(
                    b.get("type") == "tool_result" for b in chat[-1]["content"]):
                chat[-1]["content"].append(block)
            else:
                chat.append({"role": "user", "content": [block]})
        else:
            chat.append({"role": role, "content": content})
    return system, chat


def _arguments_object(arguments) -> dict:
    try:
        value = json.loads(arguments) if isinstance(arguments, str) else arguments
    except ValueError:
        value = None
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}
