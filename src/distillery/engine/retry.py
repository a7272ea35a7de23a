"""Retries of one provider's transient errors, with tenacity: exponential backoff with jitter, or the
server's own Retry-After, which also pauses every other thread of that provider (its limiter).

What is retried is decided in one place, ProviderError.retryable (providers/base.classify): 429, 5xx,
overloaded, timeouts and torn bodies are; a bad key, a bad request or an unknown model are not. A
setup problem (SetupError, a missing file, a method the provider lacks) is raised at once.
"""
from __future__ import annotations

import random

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt

from distillery.providers.base import ProviderError, SetupError

NOT_RETRYABLE = (SetupError, NotImplementedError, FileNotFoundError)


def as_provider_error(exc: Exception) -> ProviderError:
    """Local and fake providers raise plain errors; hosted ones ProviderError. Plain ones are transient."""
    return exc if isinstance(exc, ProviderError) else ProviderError(f"{type(exc).__name__}: {exc}")


class RetryPolicy:
    def __init__(self, max_retries: int = 2, backoff_s: float = 0.5):
        self.max_retries, self.backoff_s = max_retries, backoff_s

    def _wait(self, state: RetryCallState) -> float:
        err = state.outcome.exception()
        if getattr(err, "retry_after", None):
            return err.retry_after
        return self.backoff_s * 2 ** (state.attempt_number - 1) * (0.5 + random.random())

    def call(self, send, *, limiter, on_retry, tried: int = 0):
        """send() with up to max_retries retries (fewer by `tried`, attempts already made elsewhere).

        Raises ProviderError when the last attempt failed or the error is not retryable."""

        def attempt():
            try:
                return send()
            except NOT_RETRYABLE:
                raise
            except Exception as exc:  # noqa: BLE001 - every provider error is classified, then retried or not
                raise as_provider_error(exc) from exc

        def before_sleep(state: RetryCallState) -> None:
            on_retry()
            err = state.outcome.exception()
            if getattr(err, "retry_after", None):
                limiter.pause(err.retry_after)  # the whole provider waits, not just this thread

        retrying = Retrying(stop=stop_after_attempt(max(1, self.max_retries + 1 - tried)), wait=self._wait,
                            retry=retry_if_exception(lambda e: isinstance(e, ProviderError) and e.retryable),
                            before_sleep=before_sleep, reraise=True)
        return retrying(attempt)
