"""The record contract: JSONL in, JSONL out, one object a line.

Every stage reads and writes this shape and only adds fields. A bad line is an error that names the
file, the line and the problem, so nothing is ever silently dropped.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Iterator


class RecordError(ValueError):
    """A corpus line that breaks the record contract."""

    def __init__(self, path: Path | str, line: int, problem: str):
        super().__init__(f"{path}:{line}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


def _check(record: object, path: Path, line: int) -> dict:
    if not isinstance(record, dict):
        raise RecordError(path, line, f"expected a JSON object, got {type(record).__name__}")
    rid = record.get("id")
    if rid is None:
        raise RecordError(path, line, "missing required field 'id'")
    if not isinstance(rid, str) or not rid:
        raise RecordError(path, line, f"field 'id' must be a non-empty string, got {rid!r}")
    has_text = isinstance(record.get("text"), str)
    messages = record.get("messages")
    if not has_text and messages is None:
        raise RecordError(path, line, f"record {rid!r} has neither 'text' nor 'messages'")
    if messages is not None:
        if not isinstance(messages, list) or not messages:
            raise RecordError(path, line, f"record {rid!r}: field 'messages' must be a non-empty list")
        for i, m in enumerate(messages):
            if not isinstance(m, dict) or "role" not in m:
                raise RecordError(path, line, f"record {rid!r}: messages[{i}] lacks 'role'")
    return record


def read_jsonl(path: Path | str) -> Iterator[tuple[int, object]]:
    """(line number, parsed value) for each non-blank line; RecordError names a line that is not JSON."""
    path = Path(path)
    with path.open(encoding="utf-8") as fh:
        for line_no, raw in enumerate(fh, start=1):
            if not raw.strip():
                continue
            try:
                yield line_no, json.loads(raw)
            except json.JSONDecodeError as exc:
                raise RecordError(path, line_no, f"not valid JSON ({exc.msg} at column {exc.colno})") from None


def read_numbered(path: Path | str) -> Iterator[tuple[int, dict]]:
    """Yield (line number, validated record) from a JSONL file; raise RecordError on the first bad line."""
    seen: dict[str, int] = {}
    for line_no, record in read_jsonl(path):
        record = _check(record, path, line_no)
        if record["id"] in seen:
            raise RecordError(path, line_no, f"duplicate id {record['id']!r} (first seen on line {seen[record['id']]})")
        seen[record["id"]] = line_no
        yield line_no, record


def read_records(path: Path | str) -> Iterator[dict]:
    return (record for _, record in read_numbered(path))


def load_records(path: Path | str) -> list[dict]:
    return list(read_records(path))


def load_numbered(path: Path | str) -> list[tuple[int, dict]]:
    """Records with their line numbers, for errors found later that must still name the line."""
    return list(read_numbered(path))


def write_records(path: Path | str, records: Iterable[dict]) -> int:
    """Write records as JSONL (creating parent folders); return how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as fh:
        for record in records:
            fh.write(json.dumps(record, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_text(path: Path | str, text: str) -> None:
    """Reports: the folder is made if need be."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


def write_json(path: Path | str, obj: object) -> None:
    """Metrics and small artefacts: stable, diffable JSON."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=2, sort_keys=True, ensure_ascii=False) + "\n", encoding="utf-8")


def final_assistant_index(messages: list[dict]) -> int | None:
    """Index of the last assistant message that carries text (not only tool calls)."""
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if m.get("role") == "assistant" and isinstance(m.get("content"), str) and m["content"].strip():
            return i
    return None


def subject_text(record: dict) -> str:
    """What the oracle scores, templates are mined from and the student reads.

    A document: title + text. A conversation: its final assistant message.
    """
    if "messages" in record:
        i = final_assistant_index(record["messages"])
        return record["messages"][i]["content"] if i is not None else ""
    title = record.get("title")
    return f"{title}\n\n{record['text']}" if title else record["text"]


def render_context(record: dict, max_chars: int = 1200) -> str:
    """The conversation before the final assistant message, as plain text (empty for documents).

    Tool calls and tool results are shown as they are, so the oracle can check the answer against them.
    """
    if "messages" not in record:
        return ""
    messages = record["messages"]
    end = final_assistant_index(messages)
    lines = []
    for m in messages[: end if end is not None else len(messages)]:
        role = m["role"]
        if role == "system":
            continue
        if m.get("tool_calls"):
            for call in m["tool_calls"]:
                fn = call.get("function", {})
                lines.append(f"[tool call] {fn.get('name')}({fn.get('arguments')})")
        if isinstance(m.get("content"), str) and m["content"].strip():
            tag = "tool result" if role == "tool" else role
            lines.append(f"[{tag}] {m['content'].strip()}")
    text = "\n".join(lines)
    return text if len(text) <= max_chars else "…" + text[-max_chars:]


def student_text(record: dict, max_context_chars: int = 400) -> str:
    """The input the student model reads: context (trimmed) then the subject text."""
    context = render_context(record, max_context_chars)
    subject = subject_text(record)
    return f"{context}\n[answer] {subject}" if context else subject


def with_subject(record: dict, new_text: str) -> dict:
    """A copy of the record whose subject says new_text: a document's `text` (its title kept), or a
    conversation's final assistant message, every other message (tool calls and results too) as it was.
    """
    out = json.loads(json.dumps(record))
    if "messages" not in out:
        out["text"] = new_text
        return out
    i = final_assistant_index(out["messages"])
    if i is None:
        raise ValueError(f"record {record['id']!r} has no final assistant message to rewrite")
    out["messages"][i]["content"] = new_text
    return out


def require_records(path: Path | str, *, stage: str, producer: str, need: int = 1, hint: str = "") -> list[dict]:
    """The records at `path`, or a clear stop when there are fewer than `need`: which stage produced
    too little, and where to look. (An empty split otherwise dies deep inside a tokenizer.)"""
    records = load_records(path)
    if len(records) < need:
        raise SystemExit(f"{stage}: {path} has {len(records)} record(s), {stage} needs at least {need}: "
                         f"{producer} produced too little.{' ' + hint if hint else ''}")
    return records
