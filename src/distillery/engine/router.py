"""Which provider of the chain takes a call: fallback in order, or spread by capacity (round robin).

Each member has its own limiter (rpm, tpm), its own `concurrency` and a health count. `fallback` sends
every call to the first healthy member and moves on only when it fails. `round_robin` sends each call
to the member that can start it soonest (free concurrency, then the earliest limiter slot), so three
providers limited to 20, 10 and 5 requests a second serve close to 35 together, where strict turns
would run at three times the slowest one's pace. A member that failed DOWN_AFTER calls in a row is
tried last until it answers again.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from distillery.engine.limiter import RateLimiter

DOWN_AFTER = 3  # calls in a row a member fails before the chain stops trying it first


@dataclass(eq=False)
class Member:
    """One provider of the chain, with its own limiter, concurrency and health."""
    spec: object  # ModelSpec
    provider: object  # Provider
    limiter: RateLimiter
    concurrency: int
    in_flight: int = 0
    failures_in_row: float = 0  # inf: refused for good (a bad key or model), tried only when nothing else is left

    @property
    def label(self) -> str:
        return f"{self.spec.provider}/{self.spec.model}"

    @property
    def down(self) -> bool:
        return self.failures_in_row >= DOWN_AFTER


class Router:
    def __init__(self, members: list[Member], routing: str = "fallback"):
        self.members, self.routing = members, routing
        self._cond = threading.Condition()

    def workers(self) -> int:
        """Threads that keep every member busy: the first member's concurrency, or all of them summed."""
        if self.routing == "round_robin":
            return max(1, sum(m.concurrency for m in self.members))
        return max(1, self.members[0].concurrency)

    def able(self, request) -> list[Member]:
        return [m for m in self.members if request.kind != "score" or m.provider.supports_score]

    def acquire(self, request, tried: set, tokens: int) -> tuple[Member, float] | None:
        """(member, its reserved start time) for a call not yet tried on `tried`; None when none is left.

        Blocks while every eligible member is at its concurrency limit."""
        with self._cond:
            while True:
                left = [m for m in self.able(request) if m not in tried]
                if not left:
                    return None
                healthy = [m for m in left if not m.down] or left  # the down ones only when nothing else is left
                if self.routing != "round_robin":
                    healthy = healthy[:1]
                free = [m for m in healthy if m.in_flight < m.concurrency]
                starts = {m: m.limiter.next_start(tokens) for m in healthy}
                now = time.monotonic()  # after the peeks: a member with a free slot now waits 0
                wait = {m: max(0.0, starts[m] - now) for m in healthy}
                best = min(free, key=lambda m: (wait[m], m.in_flight / m.concurrency), default=None)
                busy = min((wait[m] for m in healthy if m not in free), default=None)
                # A slot far off on a free member is worse than waiting for a busy one that is sooner:
                # queueing on the slowest provider would make it finish the run last.
                if best is not None and (wait[best] == 0 or busy is None or wait[best] <= busy):
                    best.in_flight += 1
                    return best, best.limiter.reserve(tokens)
                self._cond.wait(timeout=min(1.0, max(0.005, wait[best] - busy)) if best is not None else 1.0)

    def release(self, member: Member, ok: bool | None) -> None:
        """The call on `member` ended: ok (answered), False (failed), None (not made: the budget)."""
        with self._cond:
            member.in_flight -= 1
            if ok is True:
                member.failures_in_row = 0
            elif ok is False:
                member.failures_in_row += 1
            self._cond.notify_all()
