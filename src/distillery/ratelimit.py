"""A client-side rate limiter for one provider: requests and tokens per minute, shared by threads.

Each caller reserves the next free slot under a lock and sleeps outside it, so N threads send
evenly spaced requests at the configured rate instead of bursting into 429s. A server's
`Retry-After` pauses every thread of that provider, not just the one that was told.
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

    def acquire(self, tokens: int = 0) -> float:
        """Block until a request of about `tokens` tokens may be sent; return the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                start = max(now, self._next_at, self._paused_until)
                if self.tpm:
                    rate = self.tpm / 60.0
                    want = min(float(tokens), float(self.tpm))
                    have = min(float(self.tpm), self._tokens + (start - self._tokens_at) * rate)
                    if have < want:
                        start += (want - have) / rate
                        have = want
                    self._tokens, self._tokens_at = have - want, start
                self._next_at = start + self.interval
            delay = start - now
            if delay > 0:
                time.sleep(delay)
                waited += delay
            with self._lock:
                if time.monotonic() + 1e-3 >= self._paused_until:
                    return waited
            # A Retry-After arrived while we slept: take a new slot after the pause.

    def pause(self, seconds: float) -> None:
        with self._lock:
            self._paused_until = max(self._paused_until, time.monotonic() + seconds)
