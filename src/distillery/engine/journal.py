"""An append-only journal per stage: a killed run resumes where it stopped, without paying twice."""
from __future__ import annotations

import json
import os
from pathlib import Path


class Journal:
    """Append-only JSONL of per-record results, keyed, so a killed stage resumes where it stopped.

    A torn last line (the process died mid-write) is ignored; everything before it is kept.
    """

    def __init__(self, path: Path | str):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def load(self) -> dict[str, dict]:
        done: dict[str, dict] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as fh:
                for line in fh:
                    try:
                        entry = json.loads(line)
                    except json.JSONDecodeError:
                        continue
                    done[entry["key"]] = entry["value"]
        return done

    def append_many(self, entries: list[tuple[str, dict]]) -> None:
        """Several results in one write and one fsync."""
        if not entries:
            return
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write("".join(json.dumps({"key": k, "value": v}, ensure_ascii=False) + "\n" for k, v in entries))
            fh.flush()
            os.fsync(fh.fileno())

    def append(self, key: str, value: dict) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"key": key, "value": value}, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
