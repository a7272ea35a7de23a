"""OpenAI-style chat completions: any OpenAI-compatible server (vLLM, Ollama, OpenAI itself) and Together.

    oracle: {provider: openai_compat, model: Qwen/Qwen2.5-7B-Instruct, base_url: http://localhost:8000/v1}
    oracle: {provider: together, model: meta-llama/Llama-3.3-70B-Instruct-Turbo}      # TOGETHER_API_KEY

Structured output is asked for as a JSON-schema response format, which vLLM, Ollama, OpenAI and
Together all enforce; the engine still validates what comes back.
"""
from __future__ import annotations

from distillery.providers.base import Completion, HostedProvider, SetupError, classify


class OpenAICompatProvider(HostedProvider):
    name = "openai_compat"
    key_var = "OPENAI_API_KEY"
    key_required = False  # local servers take any key; a hosted one answers 401, which names the variable
    sdk_module, pip_name = "openai", "openai"

    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 60.0):
        if self.name == "openai_compat" and not base_url:
            raise SetupError("provider 'openai_compat' needs base_url in params (e.g. http://localhost:8000/v1)")
        super().__init__(model, base_url, timeout_s)

    def connect(self, sdk, key, timeout_s):
        client_cls = getattr(sdk, "OpenAI", None) or getattr(sdk, "Together")
        return client_cls(api_key=key or "not-needed", base_url=self.base_url, max_retries=0, timeout=timeout_s)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
                  if v is not None}  # temperature 0 is sent
        if schema is not None:
            kwargs["response_format"] = self.response_format(schema)
        try:
            reply = self.client.chat.completions.create(model=self.model, messages=messages, **kwargs)
            text = reply.choices[0].message.content or ""
            usage = reply.usage
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise classify(exc, self.name) from exc
        return Completion(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                          self.name, self.model, meta={"finish_reason": reply.choices[0].finish_reason})

    @staticmethod
    def response_format(schema: dict) -> dict:
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}


class TogetherProvider(OpenAICompatProvider):
    name = "together"
    key_var = "TOGETHER_API_KEY"
    key_required = True
    sdk_module, pip_name = "together", "together"

