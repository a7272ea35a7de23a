"""Mistral's chat API through the mistralai SDK (MISTRAL_API_KEY).

    oracle: {provider: mistral, model: mistral-large-latest}

Structured output is Mistral's JSON-schema response format.
"""
from __future__ import annotations

from distillery.providers.base import Completion, HostedProvider, classify, import_sdk


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
