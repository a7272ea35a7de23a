"""A vendor's batch API as the engine sees it (the cycle itself is distillery.engine.batch).

A vendor adapter knows only its wire format: how one request is written as a line of a batch, how a
batch is created, found again in the vendor's list, polled, read and cancelled. Everything else (which
requests to send, splitting by the vendor's limits, the ledger that survives a crash, polling, the cache,
resubmitting what errored or expired) is the engine's, the same for every vendor.

    api = provider.batch_api()          # None: the vendor has no batch API
    batch_id = api.create(lines, tag)   # lines: [api.line(custom_id, provider params)]
    api.status(batch_id)                # RemoteStatus(state, ended, counts, total)
    for custom_id, reply in api.results(batch_id): ...   # Completion or ItemError, matched by custom_id

Results are matched by custom_id, never by order. A custom_id is the request's cache key (64 hex
characters, within every vendor's limit), so a result can be cached without any state of the process
that submitted it.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

TAG_KEY, STAGE_KEY = "distillery_tag", "distillery_stage"  # the metadata every batch carries, where allowed


@dataclass
class RemoteStatus:
    """Where a remote job stands, in the vendor's words and in ours."""
    state: str  # the vendor's own word: in_progress, ended, completed, expired, …
    ended: bool  # no more work will be done: collect what finished
    counts: dict[str, int] = field(default_factory=dict)  # succeeded / errored / expired / canceled / processing
    total: int = 0
    eta_s: float | None = None  # where the vendor gives one
    error: str | None = None  # a batch-level error (the whole batch refused), in the vendor's words

    @property
    def settled(self) -> int:
        return sum(v for k, v in self.counts.items() if k != "processing")


@dataclass
class ItemError:
    """One request of a batch that has no reply: errored, expired, canceled, or absent from the results."""
    kind: str  # errored | expired | canceled | missing
    detail: str
    retryable: bool = True  # False: the request itself is wrong (HTTP 400): sending it again cannot help


class BatchAPI:
    """One vendor's batch API. Subclasses implement the methods below with the vendor's SDK."""
    vendor = "base"
    max_requests = 50_000  # per batch
    max_bytes = 200 * 2**20  # per batch input (file or body)

    def __init__(self, provider):
        self.provider = provider

    @property
    def client(self):
        return self.provider.client

    def line(self, custom_id: str, params: dict) -> dict:
        """One request of the batch input: the vendor's wrapper around a live call's parameters."""
        raise NotImplementedError

    def create(self, lines: list[dict], tag: dict) -> str:
        """Submit the lines as one batch carrying `tag` (metadata) where the vendor allows; its id."""
        raise NotImplementedError

    def find(self, tag: dict, since: float, n: int, known: set[str]) -> str | None:
        """The id of a batch created with `tag` (at or after `since`, of `n` requests), from the vendor's
        list: a batch created just before a crash, whose id was never recorded; never one of `known`."""
        raise NotImplementedError

    def status(self, batch_id: str) -> RemoteStatus:
        raise NotImplementedError

    def results(self, batch_id: str):
        """Yield (custom_id, Completion | ItemError) for every request the batch has a result for."""
        raise NotImplementedError

    def cancel(self, batch_id: str) -> None:
        raise NotImplementedError

    def recent(self, limit: int = 100) -> list[dict]:
        """The vendor's recent batches: {id, state, counts, tag, created} (for `make batches`)."""
        raise NotImplementedError


def readable(read, body):
    """read(body), or an ItemError for a reply body that cannot be read (sent again in the next batch)
    rather than an exception that would stop the whole batch's collection."""
    try:
        return read(body)
    except (KeyError, IndexError, TypeError, ValueError, AttributeError) as exc:
        return ItemError("errored", f"unreadable reply ({type(exc).__name__}: {exc})")


def jsonl(lines: list[dict]) -> bytes:
    return "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines).encode()


def line_bytes(line: dict) -> int:
    return len(json.dumps(line, ensure_ascii=False).encode()) + 1


def file_batch_result(line: dict, read) -> tuple[str, object]:
    """One line of an OpenAI-style output or error file (OpenAI, Together, Mistral) as (custom_id, reply):
    {"custom_id", "response": {"status_code", "body"}, "error": {"code", "message"}}; `read(body)` turns a
    200 body into a Completion."""
    cid = line.get("custom_id")
    response, error = line.get("response") or {}, line.get("error")
    status = response.get("status_code") or response.get("status")
    if status == 200 and not error:
        return cid, readable(read, response.get("body") or {})
    body = response.get("body") or {}
    message = (error or {}).get("message") if isinstance(error, dict) else error
    message = message or (body.get("error") or {}).get("message") if isinstance(body, dict) else message
    code = str((error or {}).get("code") or "" if isinstance(error, dict) else "") or str(status or "")
    kind = "expired" if "expired" in code.lower() else "canceled" if "cancel" in code.lower() else "errored"
    retryable = not (isinstance(status, int) and 400 <= status < 500 and status not in (408, 409, 429))
    return cid, ItemError(kind, f"{code}: {message}" if message else code or "no reply", retryable)
