"""A client-side rate limiter for one provider: requests and tokens per minute, shared by threads.

Each caller reserves the next free slot under a lock and sleeps outside it, so N threads send
evenly spaced requests at the configured rate instead of bursting into 429s. `next_start` says when a
request could start without reserving anything, which is how the router picks the member of a chain
that can take a call soonest. A server's `Retry-After` pauses every thread of that provider.

(pyrate-limiter does blocking rate limits well, but cannot answer "when could this start?" without
taking the slot, which routing by capacity needs; the limiter is small enough to keep.)
"""
from __future__ import annotations

import threading
import time


class RateLimiter:
    def __init__(self, rpm: float | None = None, tpm: float | None = None):
        self.interval = 60.0 / rpm if rpm else 0.0
        self.tpm = tpm
        self._lock = threading.Lock()
        self._next_at = 0.0  # the earliest time the next request may start
        self._paused_until = 0.0
        self._tokens = float(tpm or 0)  # token bucket: at most one minute's worth
        self._tokens_at = time.monotonic()

    def _slot(self, tokens: int, now: float) -> tuple[float, float]:
        """(start time, tokens left in the bucket after it) for a request of `tokens`; lock held."""
        start = max(now, self._next_at, self._paused_until)
        if not self.tpm:
            return start, 0.0
        rate = self.tpm / 60.0
        want = min(float(tokens), float(self.tpm))
        have = min(float(self.tpm), self._tokens + (start - self._tokens_at) * rate)
        if have < want:
            start += (want - have) / rate
            have = want
        return start, have - want

    def next_start(self, tokens: int = 0) -> float:
        """When a request of about `tokens` tokens could start (time.monotonic()), reserving nothing."""
        with self._lock:
            return self._slot(tokens, time.monotonic())[0]

    def reserve(self, tokens: int = 0) -> float:
        """Take the next slot; return its start time (time.monotonic()). Call wait() before sending."""
        with self._lock:
            start, left = self._slot(tokens, time.monotonic())
            if self.tpm:
                self._tokens, self._tokens_at = left, start
            self._next_at = start + self.interval
            return start

    def wait(self, start: float, tokens: int = 0) -> float:
        """Sleep until `start`; if a Retry-After paused the provider meanwhile, take a slot after the
        pause. Return the seconds slept."""
        delay = max(0.0, start - time.monotonic())
        time.sleep(delay)
        with self._lock:
            paused = time.monotonic() + 1e-3 < self._paused_until
        return delay + (self.acquire(tokens) if paused else 0.0)

    def acquire(self, tokens: int = 0) -> float:
        """Block until a request of about `tokens` tokens may be sent; return the seconds waited."""
        return self.wait(self.reserve(tokens), tokens)

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
