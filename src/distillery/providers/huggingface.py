"""Hugging Face inference through huggingface_hub's InferenceClient (HF_TOKEN).

    oracle: {provider: huggingface, model: Qwen/Qwen2.5-72B-Instruct}                 # serverless
    oracle: {provider: huggingface, model: tgi, base_url: https://xyz.endpoints.huggingface.cloud}

With base_url (an Inference Endpoint or a TGI server) the client talks to it directly.
Structured output is the JSON-schema response format, which TGI enforces as a grammar.
Tool turns (complete_tools) send OpenAI-format `tools` with tool_choice "auto" (or "required"), which the client passes
on as they are; TGI returns arguments as an object, which become a JSON string here.
"""
from __future__ import annotations

import json

from distillery.providers.base import Completion, HostedProvider, SetupError, classify


class HuggingFaceProvider(HostedProvider):
    name = "huggingface"
    key_var, sdk_module, pip_name = "HF_TOKEN", "huggingface_hub", "huggingface_hub"

    def connect(self, sdk, key, timeout_s):
        target = {"base_url": self.base_url} if self.base_url else {"model": self.model}
        return sdk.InferenceClient(token=key, timeout=timeout_s, **target)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
                  if v is not None}
        if schema is not None:
            kwargs["response_format"] = {"type": "json_schema",
                                         "json_schema": {"name": "reply", "schema": schema, "strict": True}}
        try:
            reply = self.client.chat_completion(messages, model=None if self.base_url else self.model, **kwargs)
            text = reply.choices[0].message.content or ""
        except sdk_offline() as exc:
            raise SetupError(f"huggingface: {exc} (the Makefile sets HF_HUB_OFFLINE=1 for the offline demo; "
                             "unset it, or run with HF_HUB_OFFLINE=0, to call Hugging Face)") from None
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise classify(exc, self.name) from exc
        usage = reply.usage
        return Completion(text, getattr(usage, "prompt_tokens", 0) or 0,
                          getattr(usage, "completion_tokens", 0) or 0, self.name, self.model,
                          meta={"finish_reason": reply.choices[0].finish_reason})

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
                  if v is not None}
        try:
            reply = self.client.chat_completion(messages, model=None if self.base_url else self.model, tools=tools,
                                                tool_choice=tool_choice, **kwargs)
            message = reply.choices[0].message
            calls = [{"id": c.id, "type": "function", "function": {
                "name": c.function.name, "arguments": c.function.arguments if isinstance(c.function.arguments, str)
                else json.dumps(c.function.arguments)}} for c in message.tool_calls or []]
        except sdk_offline() as exc:
            raise SetupError(f"huggingface: {exc} (unset HF_HUB_OFFLINE to call Hugging Face)") from None
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise classify(exc, self.name) from exc
        usage = reply.usage
        return Completion(message.content or "", getattr(usage, "prompt_tokens", 0) or 0,
                          getattr(usage, "completion_tokens", 0) or 0, self.name, self.model,
                          meta={"finish_reason": reply.choices[0].finish_reason}, tool_calls=calls or None)


def sdk_offline():
    from huggingface_hub.errors import OfflineModeIsEnabled

    return OfflineModeIsEnabled
