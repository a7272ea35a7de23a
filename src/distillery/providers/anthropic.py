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
from distillery.providers.batching import BatchAPI, ItemError, RemoteStatus, readable
from distillery.providers.toolproto import is_error_result

TOOL = "record_reply"


class AnthropicProvider(HostedProvider):
    name = "anthropic"
    key_var, sdk_module, pip_name = "ANTHROPIC_API_KEY", "anthropic", "anthropic"

    def connect(self, sdk, key, timeout_s):
        return sdk.Anthropic(api_key=key, base_url=self.base_url, max_retries=0, timeout=timeout_s)

    def complete_params(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> dict:
        """The Messages API parameters of one call (live, or one request of a batch)."""
        system, chat = to_anthropic(messages)
        # max_tokens is required by the API. temperature is not sent: Anthropic deprecated it (newer
        # models answer 400) and SDK 2.x no longer takes it; the sample index still keys the cache.
        params = {"model": self.model, "messages": chat, "max_tokens": max_tokens if max_tokens is not None else 1024}
        if system:
            params["system"] = system
        if schema is not None:
            params["tools"] = [{"name": TOOL, "description": "Record the reply.", "input_schema": schema}]
            params["tool_choice"] = {"type": "tool", "name": TOOL}
        return params

    def tools_params(self, messages, tools, *, temperature=None, max_tokens=None, seed=None, tool_choice="auto") -> dict:
        params = self.complete_params(messages, max_tokens=max_tokens)  # temperature: see complete_params
        params["tools"] = [{"name": t["function"]["name"], "description": t["function"].get("description", ""),
                            "input_schema": t["function"].get("parameters") or {"type": "object", "properties": {}}}
                           for t in tools]
        params["tool_choice"] = {"type": "any" if tool_choice == "required" else "auto"}
        return params

    def read_reply(self, reply) -> Completion:
        """A Message (live or from a batch's results) as a Completion: the forced reply tool's input as JSON
        text; other tool_use blocks as OpenAI-format tool calls."""
        forced = next((b for b in reply.content if b.type == "tool_use" and b.name == TOOL), None)
        text = json.dumps(forced.input) if forced is not None else "".join(
            b.text for b in reply.content if b.type == "text")
        calls = [{"id": b.id, "type": "function", "function": {"name": b.name, "arguments": json.dumps(b.input)}}
                 for b in reply.content if b.type == "tool_use" and b is not forced]
        return Completion(text, reply.usage.input_tokens, reply.usage.output_tokens, self.name, self.model,
                          meta={"finish_reason": reply.stop_reason}, tool_calls=calls or None)

    def _create(self, params: dict) -> Completion:
        try:
            return self.read_reply(self.client.messages.create(**params))
        except Exception as exc:  # noqa: BLE001 - every SDK error (and a body it could not parse) becomes a ProviderError
            raise classify(exc, self.name) from exc

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        return self._create(self.complete_params(messages, max_tokens=max_tokens, schema=schema))

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        return self._create(self.tools_params(messages, tools, max_tokens=max_tokens, tool_choice=tool_choice))

    def batch_api(self):
        return AnthropicBatches(self)


class AnthropicBatches(BatchAPI):
    """Message Batches: requests inline (no upload), results as JSONL by custom_id. A batch takes no
    metadata, so one created just before a crash is found by its creation time and request count."""
    vendor, max_requests, max_bytes = "anthropic", 100_000, 256 * 2**20

    def line(self, custom_id, params):
        return {"custom_id": custom_id, "params": params}

    def create(self, lines, tag):
        try:
            return self.client.messages.batches.create(requests=lines).id
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.provider.name) from exc

    def _list(self, limit: int = 100, since: float = 0.0):
        """The newest batches first, up to `limit`, none created before `since` (the SDK would page on
        through the whole workspace)."""
        out = []
        for b in self.client.messages.batches.list(limit=min(limit, 100)):
            if len(out) >= limit or b.created_at.timestamp() < since:
                break
            out.append(b)
        return out

    def find(self, tag, since, n, known):
        for b in self._list(1000, since):
            c = b.request_counts
            total = c.processing + c.succeeded + c.errored + c.canceled + c.expired
            if total == n and b.id not in known:
                return b.id
        return None

    def status(self, batch_id):
        b = self.client.messages.batches.retrieve(batch_id)
        c = b.request_counts
        counts = {"succeeded": c.succeeded, "errored": c.errored, "expired": c.expired, "canceled": c.canceled,
                  "processing": c.processing}
        return RemoteStatus(b.processing_status, b.processing_status == "ended", counts, sum(counts.values()))

    def results(self, batch_id):
        for line in self.client.messages.batches.results(batch_id):
            r = line.result
            if r.type == "succeeded":
                yield line.custom_id, readable(self.provider.read_reply, r.message)
            elif r.type == "errored":
                err = r.error.error
                yield line.custom_id, ItemError("errored", f"{err.type}: {err.message}",
                                                retryable=err.type not in ("invalid_request_error",))
            else:
                yield line.custom_id, ItemError(r.type, f"the batch {r.type} before this request ran")

    def cancel(self, batch_id):
        self.client.messages.batches.cancel(batch_id)

    def recent(self, limit=100):
        return [{"id": b.id, "state": b.processing_status, "created": b.created_at.timestamp(),
                 "counts": dict(b.request_counts), "tag": {}} for b in self._list(limit)]


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
