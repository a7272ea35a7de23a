"""Tools that really run: each tool a user declares (OpenAI tools format) is a SQL statement over a real
SQLite database, executed on a fresh in-memory copy per conversation, so runs never contaminate each other
and a conversation's writes (a diary entry) can be read back by its later turns.

A tools file is a JSON list of OpenAI tool declarations, each with the statement that implements it:

    [{"type": "function",
      "function": {"name": "get_weather", "description": "Forecast for a city and day",
                   "parameters": {"type": "object", "required": ["city", "day"],
                                  "properties": {"city": {"type": "string"}, "day": {"type": "string"}}}},
      "sql": "SELECT condition, temp_c FROM weather WHERE city = :city AND day = :day"}]

Arguments are bound as named parameters (never spliced into the SQL). A SELECT returns its rows; any other
statement returns what it changed. What goes wrong is returned to the model as a tool error, the way real
APIs do, and counted: an unknown tool, arguments that are not JSON or miss a required key or have the
wrong type, a statement that fails. The database is a `.sql` script (diffable, the demo's) or a SQLite file.
"""
from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

TYPES = {"string": str, "integer": int, "number": (int, float), "boolean": bool, "array": list, "object": dict}
MAX_ROWS = 20  # a tool result the model reads: the first rows, and how many there were


class ToolsFileError(ValueError):
    """A tools file that cannot be used: the message names the file and the tool."""


@dataclass(frozen=True)
class Tool:
    name: str
    declaration: dict  # the OpenAI declaration, as sent to the model (without the SQL)
    sql: str

    @property
    def parameters(self) -> dict:
        return self.declaration["function"].get("parameters") or {"type": "object", "properties": {}}


def load_tools(path: Path) -> dict[str, Tool]:
    try:
        items = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ToolsFileError(f"{path}: no such file (generate's tools; `make corpus` writes the demo's)") from None
    except json.JSONDecodeError as exc:
        raise ToolsFileError(f"{path}: not JSON ({exc})") from None
    if not isinstance(items, list) or not items:
        raise ToolsFileError(f"{path}: expected a non-empty JSON list of tool declarations")
    tools = {}
    for i, item in enumerate(items):
        fn = item.get("function") if isinstance(item, dict) else None
        if not isinstance(fn, dict) or not fn.get("name") or not isinstance(item.get("sql"), str):
            raise ToolsFileError(f"{path}: tool #{i + 1} needs function.name and sql (OpenAI format plus \"sql\")")
        if fn["name"] in tools:
            raise ToolsFileError(f"{path}: tool {fn['name']!r} is declared twice")
        declaration = {"type": "function", "function": fn}
        tools[fn["name"]] = Tool(fn["name"], declaration, item["sql"])
    return tools


def declarations(tools: dict[str, Tool]) -> list[dict]:
    return [t.declaration for t in tools.values()]


class Database:
    """The source database, read once; `fresh()` gives each conversation its own in-memory copy."""

    def __init__(self, path: Path):
        self.path = Path(path)
        source = sqlite3.connect(":memory:")
        if self.path.suffix == ".sql":
            source.executescript(self.path.read_text(encoding="utf-8"))
        else:
            with sqlite3.connect(f"file:{self.path}?mode=ro", uri=True) as disk:
                disk.backup(source)
        self.source = source

    def fresh(self) -> sqlite3.Connection:
        conn = sqlite3.connect(":memory:", check_same_thread=False)
        self.source.backup(conn)
        conn.row_factory = sqlite3.Row
        return conn


def check_arguments(tool: Tool, arguments: str) -> tuple[dict | None, str | None]:
    """(arguments, None), or (None, what is wrong with them) against the tool's JSON schema."""
    try:
        args = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError as exc:
        return None, f"arguments are not valid JSON ({exc.msg})"
    if not isinstance(args, dict):
        return None, "arguments must be a JSON object"
    schema = tool.parameters
    props = schema.get("properties") or {}
    missing = [k for k in schema.get("required") or [] if k not in args]
    if missing:
        return None, f"missing required argument(s): {', '.join(missing)}"
    unknown = [k for k in args if k not in props]
    if unknown:
        return None, f"unknown argument(s): {', '.join(unknown)}; expected {', '.join(props) or 'none'}"
    for key, value in args.items():
        spec = props[key]
        expected = TYPES.get(spec.get("type", ""))
        if expected and (not isinstance(value, expected) or (expected is not bool and isinstance(value, bool))):
            return None, f"argument {key!r} should be {spec['type']}, got {type(value).__name__}"
        if "enum" in spec and value not in spec["enum"]:
            return None, f"argument {key!r} must be one of {spec['enum']}, got {value!r}"
    return args, None


def execute(tools: dict[str, Tool], conn: sqlite3.Connection, name: str, arguments) -> tuple[str, str | None]:
    """Run one tool call: (result content for the `tool` message, error kind or None). Errors are
    returned as `{"error": "..."}` so the model can read them and try again."""
    tool = tools.get(name)
    if tool is None:
        return _error(f"unknown tool {name!r}; the tools are: {', '.join(tools)}"), "unknown_tool"
    args, problem = check_arguments(tool, arguments)
    if problem:
        return _error(f"{name}: {problem}"), "bad_arguments"
    try:
        cursor = conn.execute(tool.sql, {k: v if not isinstance(v, (list, dict)) else json.dumps(v)
                                         for k, v in args.items()})
        if cursor.description is None:  # INSERT / UPDATE / DELETE
            conn.commit()
            return json.dumps({"ok": True, "changed": cursor.rowcount, "id": cursor.lastrowid}), None
        rows = [dict(r) for r in cursor.fetchmany(MAX_ROWS + 1)]
    except sqlite3.Error as exc:
        return _error(f"{name} failed: {exc}"), "query_failed"
    result = {"rows": rows[:MAX_ROWS]}
    if len(rows) > MAX_ROWS:
        result["truncated"] = True
    return json.dumps(result, ensure_ascii=False), None


def _error(message: str) -> str:
    return json.dumps({"error": message})


def replay(messages: list[dict], tools: dict[str, Tool], database: Database) -> list[str]:
    """Every tool call of a conversation executed again, in order, on a fresh copy of the database:
    where a recorded result differs from what the call returns now (empty: the record is faithful)."""
    conn, results = database.fresh(), {m.get("tool_call_id"): m.get("content") for m in messages if m["role"] == "tool"}
    wrong = []
    for m in messages:
        for call in m.get("tool_calls") or []:
            fn = call.get("function") or {}
            content, _ = execute(tools, conn, fn.get("name", ""), fn.get("arguments") or "{}")
            if results.get(call.get("id")) != content:
                wrong.append(f"{call.get('id')} {fn.get('name')}: recorded {str(results.get(call.get('id')))[:80]!r}, "
                             f"now {content[:80]!r}")
    return wrong
