"""An append-only journal per stage: a killed run resumes where it stopped, without paying twice."""
from __future__ import annotations

import json
import os
from pathlib import Path


def append_lines(path: Path, lines: list[str]) -> None:
    """Append JSON lines in one write and one fsync. A last line torn by a kill is ended first, so it stays
    alone (unreadable, skipped) and does not swallow the first line written after it."""
    torn = False
    if path.exists() and path.stat().st_size:
        with path.open("rb") as fh:
            fh.seek(-1, os.SEEK_END)
            torn = fh.read(1) != b"\n"
    with path.open("a", encoding="utf-8") as fh:
        fh.write(("\n" if torn else "") + "".join(line + "\n" for line in lines))
        fh.flush()
        os.fsync(fh.fileno())


def read_lines(path: Path):
    """Each JSON object of an append-only file; a torn line (the process died mid-write) is skipped."""
    if not path.exists():
        return
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            try:
                yield json.loads(line)
            except json.JSONDecodeError:
                continue


class Journal:
    """Append-only JSONL of per-record results, keyed, so a killed stage resumes where it stopped.

    A torn last line (the process died mid-write) is ignored; everything before it is kept.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, dict]:
        return {entry["key"]: entry["value"] for entry in read_lines(self.path)}

    def append_many(self, entries: list[tuple[str, dict]]) -> None:
        """Several results in one write and one fsync."""
        if entries:
            append_lines(self.path, [json.dumps({"key": k, "value": v}, ensure_ascii=False) for k, v in entries])

    def append(self, key: str, value: dict) -> None:
        self.append_many([(key, value)])
