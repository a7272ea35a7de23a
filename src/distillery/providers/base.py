"""The one interface every LLM implements.

    complete(messages, *, temperature, max_tokens, seed, schema) -> Completion
    complete_tools(messages, tools, *, temperature, max_tokens, seed, tool_choice) -> Completion with .tool_calls
    score(messages, *, fields, low, high) -> Completion with .scores   (only where supports_score)

A provider is one small module; its SDK is imported inside it, lazily, so importing distillery
stays fast and a provider you do not use needs nothing installed. Hosted providers turn every SDK
error into a ProviderError that says whether a retry can help and how long the server asked to wait;
the engine (distillery.engine.engine) owns retries, rate limits and fallback, so SDK-level retries are off.
"""
from __future__ import annotations

import importlib
import os
from dataclasses import asdict, dataclass, field


class ProviderError(RuntimeError):
    """A failed call. `retryable`: overload, rate limit, timeout, 5xx, a torn reply; not a bad key
    or a bad request. `retry_after`: seconds the server asked for (Retry-After), when it did."""

    def __init__(self, message: str, *, retryable: bool = True, retry_after: float | None = None,
                 status: int | None = None, connection: bool = False):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status
        self.connection = connection  # no HTTP answer at all: refused, reset, timed out


class SetupError(RuntimeError):
    """A missing key, SDK or setting: no retry or fallback can help; the message says what to do."""


class StageStop(SetupError):
    """Every call would fail the same way (a rejected key, an unknown model, a dead server): the stage
    stops at once instead of pacing through every record."""


STOP_STATUS = {401: "the key is wrong or missing", 403: "the key may not use this model or endpoint",
               404: "the model name or base_url is wrong"}


@dataclass
class Completion:
    text: str
    input_tokens: int
    output_tokens: int
    provider: str
    model: str
    scores: dict[str, float] | None = None  # score(): expected value per field
    meta: dict = field(default_factory=dict)
    # complete_tools(): the calls the model asked for, in the OpenAI format the record contract uses:
    # [{"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{…}"}}]
    tool_calls: list[dict] | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    @property
    def truncated(self) -> bool:
        """The reply stopped at max_tokens, not where the model meant to end it."""
        return str(self.meta.get("finish_reason")) in TRUNCATED

    @classmethod
    def from_dict(cls, d: dict) -> "Completion":
        return cls(**d)


TRUNCATED = {"length", "max_tokens", "FinishReason.LENGTH"}  # finish reasons that mean "cut off"


class Provider:
    name = "base"
    supports_score = False
    batches_on_device = False  # True: complete_batch runs one forward pass; False: the engine fans out calls
    free = False  # True: runs on this machine, costs nothing, needs no price in base.prices
    # True: a last assistant message is continued, not answered, and complete_batch takes `stop` strings
    # (the text tool protocol prefills a required call and ends it at its closing tag)
    continues_prefill = False

    def __init__(self, model: str, base_url: str | None = None):
        self.model = model
        self.base_url = base_url

    @classmethod
    def from_spec(cls, spec) -> "Provider":
        """Build from a ModelSpec (params), taking the options this provider uses."""
        return cls(model=spec.model, base_url=spec.base_url, timeout_s=spec.timeout_s)

    def complete(self, messages: list[dict], *, temperature: float | None = None,
                 max_tokens: int | None = None, seed: int | None = None,
                 schema: dict | None = None) -> Completion:
        """`schema`: a JSON schema the reply must follow; the provider asks for JSON its best way
        (a forced tool call, JSON-schema or JSON mode) and returns the JSON as `text`."""
        raise NotImplementedError

    def complete_batch(self, batch: list[list[dict]], *, temperature: float | None = None,
                       max_tokens: int | None = None, seeds: list[int] | None = None,
                       schema: dict | None = None) -> list[Completion]:
        """Several independent completions; providers that can batch on device override this."""
        seeds = seeds or [None] * len(batch)
        return [self.complete(m, temperature=temperature, max_tokens=max_tokens, seed=s, schema=schema)
                for m, s in zip(batch, seeds)]

    def complete_tools(self, messages: list[dict], tools: list[dict], *, temperature: float | None = None,
                       max_tokens: int | None = None, seed: int | None = None, tool_choice: str = "auto") -> Completion:
        """One assistant turn that may call tools. `messages` and `tools` are in the OpenAI format (the
        record contract's: assistant `tool_calls`, `tool` messages with `tool_call_id`); the reply's
        `tool_calls` too, whatever the vendor's own wire format. Hosted providers use their native tool
        calling; this default is the text protocol of `distillery.providers.toolproto`.
        tool_choice "required": the reply must call a tool."""
        from distillery.providers import toolproto

        return toolproto.complete_tools(self, messages, tools, temperature=temperature, max_tokens=max_tokens,
                                        seed=seed, tool_choice=tool_choice)

    def complete_tools_batch(self, batch: list[list[dict]], tools: list[dict], *, temperature: float | None = None,
                             max_tokens: int | None = None, seeds: list[int] | None = None,
                             tool_choice: str = "auto") -> list[Completion]:
        from distillery.providers import toolproto

        return toolproto.complete_tools_batch(self, batch, tools, temperature=temperature, max_tokens=max_tokens,
                                              seeds=seeds, tool_choice=tool_choice)

    def batch_api(self):
        """The vendor's batch API (providers.batching.BatchAPI), or None where there is none."""
        return None

    def score(self, messages: list[dict], *, fields: list[str], low: float, high: float) -> Completion:
        raise NotImplementedError(f"provider {self.name!r} cannot read token probabilities")

    def score_batch(self, batch: list[list[dict]], *, fields: list[str], low: float, high: float) -> list[Completion]:
        return [self.score(m, fields=fields, low=low, high=high) for m in batch]


class HostedProvider(Provider):
    """A provider behind an API key and a vendor SDK. The key comes from the environment (or .env);
    SDK-level retries are off, because the engine retries with the limiter and the chain in view."""
    key_var = ""  # the environment variable that holds the key
    key_required = True
    sdk_module = pip_name = ""

    def __init__(self, model: str, base_url: str | None = None, timeout_s: float = 60.0):
        super().__init__(model, base_url)
        self.timeout_s = timeout_s
        self._client = None

    @property
    def client(self):
        """The SDK client, made at the first call: a dry run (`make plan`) needs no key and no SDK."""
        if self._client is None:
            key = api_key(self.key_var, self.name, required=self.key_required)
            self._client = self.connect(import_sdk(self.sdk_module, self.pip_name, self.name), key, self.timeout_s)
        return self._client

    @client.setter
    def client(self, value):  # tests put a stub client here
        self._client = value

    def setup_problem(self) -> str | None:
        """What would stop the first call (a missing key or SDK), without raising."""
        try:
            api_key(self.key_var, self.name, required=self.key_required)
            import_sdk(self.sdk_module, self.pip_name, self.name)
        except SetupError as exc:
            return str(exc)
        return None

    def connect(self, sdk, key: str | None, timeout_s: float):
        """The SDK's client for this provider."""
        raise NotImplementedError


def api_key(var: str, provider: str, *, required: bool = True) -> str | None:
    """The key from the environment or a .env file in the working directory; never from params."""
    if var not in os.environ:
        from dotenv import find_dotenv, load_dotenv

        load_dotenv(find_dotenv(usecwd=True), override=False)  # .env fills only what the environment lacks
    key = os.environ.get(var)
    if not key and required:
        raise SetupError(f"provider {provider!r} needs an API key: set {var} in the environment or in .env")
    return key or None


def import_sdk(module: str, pip_name: str, provider: str):
    try:
        return importlib.import_module(module)
    except ImportError:
        raise SetupError(f"provider {provider!r} needs the {pip_name!r} package: pip install {pip_name}") from None


RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 520, 522, 524, 529}


def classify(exc: Exception, provider: str) -> ProviderError:
    """Any SDK's exception as a ProviderError. SDKs differ in names but agree on the shape: an HTTP
    status on the exception or its response, headers on the response, timeouts named as such."""
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, SetupError):  # a missing key or SDK, found at the first call: no retry helps
        raise exc
    response = getattr(exc, "response", None) or getattr(exc, "raw_response", None)
    status = getattr(exc, "status_code", None) or getattr(response, "status_code", None)
    retry_after = None
    headers = getattr(response, "headers", None)
    if headers is not None:
        value = headers.get("retry-after")
        try:
            retry_after = float(value) if value is not None else None
        except ValueError:
            retry_after = None  # an HTTP date: fall back to backoff
    kind = type(exc).__name__
    text = " ".join(str(exc).split())[:2000] or kind  # the whole message: its reason is often past line one
    root = exc
    while root.__cause__ is not None or root.__context__ is not None:  # "Connection error." hides the reason
        root = root.__cause__ or root.__context__
    if root is not exc and str(root) and str(root) not in text:
        text = f"{text.rstrip('.')} ({type(root).__name__}: {' '.join(str(root).split())[:500]})"
    if isinstance(status, int) and status >= 400:
        retryable = status in RETRYABLE_STATUS or status >= 500
        hint = {401: " (check the API key)", 403: " (check the key's permissions)",
                404: " (check the model name and base_url)"}.get(status, "")
        return ProviderError(f"{provider}: HTTP {status}: {text}{hint}", retryable=retryable,
                             retry_after=retry_after, status=status)
    # No status: a timeout, a dropped connection, or a 200 whose body would not decode (truncated,
    # not JSON). All are transient from here, so all are retried.
    if isinstance(exc, (ValueError, AttributeError, KeyError, TypeError)) or isinstance(status, int):
        return ProviderError(f"{provider}: unreadable reply body ({kind}: {text})", retryable=True)
    return ProviderError(f"{provider}: {kind}: {text}", retryable=True, connection=True)


# name -> "module:Class"; modules are imported only when the provider is asked for.
REGISTRY = {
    "local": "distillery.providers.local:LocalProvider",
    "fake": "distillery.testing.fake:FakeProvider",
    "anthropic": "distillery.providers.anthropic:AnthropicProvider",
    "mistral": "distillery.providers.mistral:MistralProvider",
    "together": "distillery.providers.openai_compat:TogetherProvider",
    "openai_compat": "distillery.providers.openai_compat:OpenAICompatProvider",
    "huggingface": "distillery.providers.huggingface:HuggingFaceProvider",
}


def provider_class(name: str) -> type[Provider]:
    if name not in REGISTRY:
        raise ValueError(f"unknown provider {name!r}; available: {', '.join(sorted(REGISTRY))}")
    module, cls = REGISTRY[name].split(":")
    return getattr(importlib.import_module(module), cls)


def provider_for(spec) -> Provider:
    """The provider a ModelSpec names, built from it."""
    return provider_class(spec.provider).from_spec(spec)


def get_provider(name: str, model: str, base_url: str | None = None, **options) -> Provider:
    """A provider by name; `options` are provider-specific (the local provider's dtype, a timeout)."""
    return provider_class(name)(model=model, base_url=base_url, **options)
