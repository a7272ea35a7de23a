"""OpenAI-style chat completions: any OpenAI-compatible server (vLLM, Ollama, OpenAI itself) and Together.

    oracle: {provider: openai_compat, model: Qwen/Qwen2.5-7B-Instruct, base_url: http://localhost:8000/v1}
    oracle: {provider: together, model: meta-llama/Llama-3.3-70B-Instruct-Turbo}      # TOGETHER_API_KEY

Structured output is asked for as a JSON-schema response format, which vLLM, Ollama, OpenAI and
Together all enforce; the engine still validates what comes back.

Tool turns (complete_tools) send `tools` with tool_choice "auto" (or "required"); the history is already in this format.
A server that refuses tools (vLLM without --enable-auto-tool-choice, llama.cpp without --jinja, an Ollama
model without tool support) is switched once to the text protocol of distillery.providers.toolproto,
for that call and the rest of the run, with a note in the metrics, like the JSON-mode switch below.
"""
from __future__ import annotations

import json
import threading

from distillery.providers.base import Completion, HostedProvider, ProviderError, SetupError, classify


class OpenAICompatProvider(HostedProvider):
    name = "openai_compat"
    key_var = "OPENAI_API_KEY"
    key_required = False  # local servers take any key; a hosted one answers 401, which names the variable
    sdk_module, pip_name = "openai", "openai"

    @classmethod
    def from_spec(cls, spec) -> "OpenAICompatProvider":
        return cls(model=spec.model, base_url=spec.base_url, timeout_s=spec.timeout_s, json_mode=spec.json_mode)

    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 60.0, json_mode: str = "auto"):
        if self.name == "openai_compat" and not base_url:
            raise SetupError("provider 'openai_compat' needs base_url in params (e.g. http://localhost:8000/v1)")
        if json_mode not in JSON_MODES:
            raise SetupError(f"json_mode: expected one of {', '.join(JSON_MODES)}, got {json_mode!r}")
        super().__init__(model, base_url, timeout_s)
        self.json_mode = "json_schema" if json_mode == "auto" else json_mode
        self.auto = json_mode == "auto"  # auto: one rejection of json_schema switches to json_object
        self._switching = threading.Lock()
        self.native_tools = True  # False once the server refused `tools`: the text protocol is used instead
        self.notes: list[str] = []

    def connect(self, sdk, key, timeout_s):
        client_cls = getattr(sdk, "OpenAI", None) or getattr(sdk, "Together")
        return client_cls(api_key=key or "not-needed", base_url=self.base_url, max_retries=0, timeout=timeout_s)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
                  if v is not None}  # temperature 0 is sent
        mode = self.json_mode
        try:
            reply = self._create(messages, kwargs, schema, mode)
        except ProviderError as err:
            if not (schema is not None and self.auto and mode == "json_schema" and rejects_json_schema(err)):
                raise
            # The server does not take the JSON-schema response format (llama.cpp, older servers): use the
            # JSON-object form with the schema beside it, for this call and the rest of the run. Calls sent
            # before the switch come back rejected too: each is sent again, the note is written once.
            with self._switching:
                if self.json_mode == "json_schema":
                    self.json_mode = "json_object"
                    self.notes.append(f"{self.name} at {self.base_url} rejected response_format json_schema "
                                      f"({err.status}); switched to json_object")
            reply = self._create(messages, kwargs, schema, "json_object")
        text = reply.choices[0].message.content or ""
        usage = reply.usage
        return Completion(text, getattr(usage, "prompt_tokens", 0) or 0, getattr(usage, "completion_tokens", 0) or 0,
                          self.name, self.model, meta={"finish_reason": reply.choices[0].finish_reason})

    def complete_params(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> dict:
        """The request body of one call, as a batch sends it (the live path adds its JSON-mode fallback)."""
        params = {"model": self.model, "messages": messages, **{k: v for k, v in {
            "temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items() if v is not None}}
        if schema is not None and self.json_mode != "none":
            params["response_format"] = self.response_format(schema, self.json_mode)
        return params

    def tools_params(self, messages, tools, *, temperature=None, max_tokens=None, seed=None, tool_choice="auto"):
        return {**self.complete_params(messages, temperature=temperature, max_tokens=max_tokens, seed=seed),
                "tools": tools, "tool_choice": tool_choice}

    def read_body(self, body: dict) -> Completion:
        """A chat completion body (a line of a batch's output file) as a Completion."""
        return chat_completion(body, self.name, self.model)

    def batch_api(self):
        from distillery.providers.file_batches import OpenAIBatches

        return OpenAIBatches(self)

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None,
                       tool_choice="auto") -> Completion:
        if not self.native_tools:
            return super().complete_tools(messages, tools, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                          tool_choice=tool_choice)
        kwargs = {k: v for k, v in {"temperature": temperature, "max_tokens": max_tokens, "seed": seed}.items()
                  if v is not None}
        try:
            reply = self.client.chat.completions.create(model=self.model, messages=messages, tools=tools,
                                                        tool_choice=tool_choice, **kwargs)
            message = reply.choices[0].message
            calls = [openai_tool_call(c) for c in message.tool_calls or []]
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            err = classify(exc, self.name)
            if not rejects_tools(err):
                raise err from exc
            with self._switching:
                if self.native_tools:
                    self.native_tools = False
                    self.notes.append(f"{self.name} at {self.base_url} refused tools ({err.status}); "
                                      "switched to the text tool protocol")
            return super().complete_tools(messages, tools, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                          tool_choice=tool_choice)
        usage = reply.usage
        return Completion(message.content or "", getattr(usage, "prompt_tokens", 0) or 0,
                          getattr(usage, "completion_tokens", 0) or 0, self.name, self.model,
                          meta={"finish_reason": reply.choices[0].finish_reason}, tool_calls=calls or None)

    def _create(self, messages, kwargs, schema, mode: str):
        extra = {} if schema is None or mode == "none" else {"response_format": self.response_format(schema, mode)}
        try:
            return self.client.chat.completions.create(model=self.model, messages=messages, **kwargs, **extra)
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise classify(exc, self.name) from exc

    @staticmethod
    def response_format(schema: dict, mode: str) -> dict:
        if mode == "json_object":  # llama.cpp (and vLLM, LM Studio) read the schema beside the type
            return {"type": "json_object", "schema": schema}
        return {"type": "json_schema", "json_schema": {"name": "reply", "schema": schema, "strict": True}}


JSON_MODES = ("auto", "json_schema", "json_object", "none")


def rejects_json_schema(err: ProviderError) -> bool:
    """A 400/422/500 whose message is about the response format: the server lacks json_schema."""
    text = str(err).lower()
    return err.status in (400, 422, 500) and any(w in text for w in ("response_format", "json_schema", "json_object"))


def openai_tool_call(call) -> dict:
    """An SDK tool call object as the record contract's dict. Arguments a server sent as an object (some
    do) become a JSON string; a custom (non-function) tool call keeps its name and raw input."""
    fn = getattr(call, "function", None) or getattr(call, "custom", None)
    arguments = getattr(fn, "arguments", None)
    if arguments is None:
        arguments = getattr(fn, "input", "")
    return {"id": call.id, "type": "function", "function": {
        "name": fn.name, "arguments": arguments if isinstance(arguments, str) else json.dumps(arguments)}}


TOOL_REFUSALS = ("tool choice requires", "does not support tools", "tools param requires", "tool_choice",
                 "tool calling is not supported", "tools are not supported")


def rejects_tools(err: ProviderError) -> bool:
    """A 400/422/500 whose message says the server or model cannot do tool calling at all."""
    text = str(err).lower()
    return err.status in (400, 422, 500) and any(w in text for w in TOOL_REFUSALS)


def chat_completion(body: dict, provider: str, model: str) -> Completion:
    """An OpenAI-format chat completion body (a dict, as batch output files carry it) as a Completion."""
    choice = body["choices"][0]
    message, usage = choice.get("message") or {}, body.get("usage") or {}
    calls = [{"id": c.get("id"), "type": "function", "function": {
        "name": c["function"]["name"], "arguments": a if isinstance(a := c["function"].get("arguments", ""), str)
        else json.dumps(a)}} for c in message.get("tool_calls") or []]
    content = message.get("content") or ""
    if isinstance(content, list):  # Mistral's content chunks
        content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return Completion(content, usage.get("prompt_tokens") or 0, usage.get("completion_tokens") or 0, provider, model,
                      meta={"finish_reason": choice.get("finish_reason")}, tool_calls=calls or None)


class TogetherProvider(OpenAICompatProvider):
    name = "together"
    key_var = "TOGETHER_API_KEY"
    key_required = True
    sdk_module, pip_name = "together", "together"

    def batch_api(self):
        from distillery.providers.file_batches import TogetherBatches

        return TogetherBatches(self)

