"""A content-addressed cache of LLM calls in SQLite.

The cache key hashes everything that decides an answer (provider, model, kind of call, messages,
sampling params and a sample index), so a rerun pays nothing and temperature > 0 still reproduces.
It lives outside DVC's outs (params: base.state_dir) because DVC deletes outs before a stage runs, and
every workspace of the repository (temporary and queued experiments too) shares it.
"""
from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path


def shared_cache_path(state_dir: str | Path, override: str | None = None) -> Path:
    """Where the call cache lives. Every workspace of one repository shares it: `dvc exp run --temp`
    and queued experiments run in copies under <repo>/.dvc/tmp/exps/, without the gitignored state
    dir, and would otherwise pay again for calls already made. The cache is content-addressed, so
    sharing it is safe (SQLite in WAL mode serialises writers across processes). `override`
    (base.cache_path, or DISTILLERY_CACHE in the environment) puts it elsewhere, e.g. one cache for
    every project on the machine. Journals stay per workspace."""
    import os

    chosen = os.environ.get("DISTILLERY_CACHE") or override
    if chosen:
        return Path(chosen).expanduser()
    state = Path(state_dir)
    if state.is_absolute():
        return state / "cache.sqlite"
    cwd = Path.cwd().resolve()
    parts = cwd.parts
    for i in range(len(parts) - 3):
        if parts[i:i + 3] == (".dvc", "tmp", "exps"):  # an experiment's copy: use the repository's own
            return Path(*parts[:i]) / state / "cache.sqlite"
    return state / "cache.sqlite"


def content_key(**parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


class CallCache:
    def __init__(self, path: Path | str):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # One connection shared by the engine's threads, serialised by a lock (SQLite writes are anyway).
        self._db = sqlite3.connect(str(path), timeout=60, check_same_thread=False)
        self._lock = threading.Lock()
        self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer; survives kill -9
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, value TEXT NOT NULL)")

    def get(self, key: str) -> dict | None:
        with self._lock:
            row = self._db.execute("SELECT value FROM calls WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def get_many(self, keys: list[str]) -> dict[str, dict]:
        """The cached values of those `keys` that are cached, in a few queries rather than one a key."""
        found: dict[str, dict] = {}
        unique = list(dict.fromkeys(keys))
        with self._lock:
            for start in range(0, len(unique), 900):  # SQLite's limit on parameters per statement
                chunk = unique[start:start + 900]
                rows = self._db.execute(f"SELECT key, value FROM calls WHERE key IN ({','.join('?' * len(chunk))})",
                                        chunk).fetchall()
                found.update((k, json.loads(v)) for k, v in rows)
        return found

    def put(self, key: str, value: dict) -> None:
        with self._lock, self._db:  # one transaction a call: a killed run keeps every answer it paid for
            self._db.execute("INSERT OR REPLACE INTO calls VALUES (?, ?)", (key, json.dumps(value)))

    def put_many(self, items: list[tuple[str, dict]]) -> None:
        """Several answers in one transaction (a batch's results: one commit a thousand, not one each)."""
        if items:
            with self._lock, self._db:
                self._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?)",
                                     [(k, json.dumps(v)) for k, v in items])

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        self._db.close()


class ChainCache:
    """The cache as the engine sees it: a request's key under each member of a provider chain, looked
    up in bulk, so a rerun finds an answer whichever member gave it."""

    def __init__(self, cache: CallCache, members: list):
        self.cache, self.members = cache, members

    @staticmethod
    def key(member, request) -> str:
        s = member.spec
        return content_key(provider=s.provider, model=s.model, base_url=s.base_url, dtype=s.dtype,
                           **request.key_parts())

    def lookup(self, requests: list) -> dict:
        """index -> cached Completion, for the requests some member of the chain answered once."""
        from distillery.providers.base import Completion

        keys = [[self.key(m, r) for m in self.members] for r in requests]
        found = self.cache.get_many([k for row in keys for k in row])
        hits = {}
        for i, row in enumerate(keys):
            hit = next((found[k] for k in row if k in found), None)
            if hit is not None:
                hits[i] = Completion.from_dict(hit)
        return hits

    def put(self, member, request, completion) -> None:
        self.cache.put(self.key(member, request), completion.to_dict())

    def __len__(self) -> int:
        return len(self.cache)
