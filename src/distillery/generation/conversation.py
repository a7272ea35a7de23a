"""generate's two LLM steps over the planned scenarios: briefs, then tool-using conversations.

1. Briefs: `per_call` scenarios per call; the reply is a JSON array checked item by item. Valid items
   are kept (and journaled); missing or invalid ones go back in the queue for the next call (a new
   sample), up to `max_attempts`, then they are recorded failures. Nothing is dropped silently. With
   `per_call: 1` the reply is just the user's first message, as plain text (prompts/generate_opening.md):
   a model too small to write JSON (the demo's) can still do that.
2. Conversations, advancing together (a local model answers a step of all of them in one device batch;
   hosted providers get each conversation's next step as soon as its last reply is in): the assistant
   turn is a ToolTurnRequest (native tool calling for hosted providers, the text protocol for the local
   model; `tool_choice: required` makes the conversation's first reply a tool call); each tool call is executed against the conversation's own fresh copy of the database and its
   result (or error) fed back, up to `max_tool_rounds`; then the simulated user writes the next message,
   for `turns` user turns. Every step is a cached call, so a killed run replays finished steps from the
   cache for free; a finished conversation is journaled whole.
   `mode: document` (document-grounded) first has the brief's writer produce a document of the scenario's
   type and length (prompts/generate_document.md, `document_tokens`); the user's opening carries it, the
   assistant answers it without tools, and the record keeps the document.
"""
from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distillery.engine.requests import BudgetExceeded, CallFailed, CompleteRequest, ToolTurnRequest
from distillery.generation.tools import Database, Tool, declarations, execute
from distillery.text.templates import match_patterns
from distillery.text.tokens import jaccard, shingles

BRIEF_FIELDS = ("situation", "opening")


class Prompt:
    """A prompt file: an HTML comment (for people) stripped, `{placeholders}` filled."""

    def __init__(self, path: Path | str):
        self.template = re.sub(r"<!--.*?-->\s*", "", Path(path).read_text(encoding="utf-8"), flags=re.S).strip()

    def render(self, **values) -> str:
        return self.template.format_map(_Blank(values))


class _Blank(dict):
    def __missing__(self, key):  # an axis the scenario does not have: empty, not a KeyError
        return ""


def scenario_line(row: dict) -> str:
    return "; ".join(f"{k}: {v}" for k, v in row.items() if k != "id")


# --- 1. briefs ------------------------------------------------------------------------------------
def parse_briefs(text: str, asked: set[str]) -> tuple[dict[str, dict], list[str]]:
    """The valid briefs in a reply, by scenario id, and what was wrong with the rest."""
    start, end = text.find("["), text.rfind("]")
    try:
        items = json.loads(text[start:end + 1]) if start >= 0 and end > start else None
    except json.JSONDecodeError:
        items = None
    if not isinstance(items, list):
        return {}, ["the reply is not a JSON array"]
    briefs, problems = {}, []
    for item in items:
        sid = item.get("id") if isinstance(item, dict) else None
        if sid not in asked or sid in briefs:
            problems.append(f"an item with an unknown or repeated id: {str(item)[:80]}")
        elif not all(isinstance(item.get(f), str) and item[f].strip() for f in BRIEF_FIELDS):
            problems.append(f"{sid}: needs non-empty {' and '.join(BRIEF_FIELDS)}")
        else:
            briefs[sid] = {f: item[f].strip() for f in BRIEF_FIELDS}
    return briefs, problems


def brief_requests(groups: list[list[dict]], prompts: dict[str, Prompt], tools: dict[str, Tool], cfg,
                   attempt: int) -> list:
    """One call per group of scenarios; its output bound grows with the group. A group of one asks for
    the opening message alone, in plain text."""
    tool_list = "\n".join(f"- {t.name}: {t.declaration['function'].get('description', '')}" for t in tools.values())

    def content(group):
        if cfg.per_call == 1:
            return prompts["opening"].render(tools=tool_list, scenario=scenario_line(group[0]))
        return prompts["brief"].render(tools=tool_list,
                                       scenarios="\n".join(json.dumps(r, ensure_ascii=False) for r in group))

    return [CompleteRequest([{"role": "user", "content": content(group)}], cfg.temperature,
                            cfg.max_tokens * len(group), sample=attempt) for group in groups]


def parse_opening(text: str, row: dict) -> tuple[dict[str, dict], list[str]]:
    """per_call 1: the reply is the user's first message; the scenario itself is the situation."""
    opening = text.strip().strip('"').strip()
    if not opening or len(opening) > 1000:
        return {}, [f"{row['id']}: the opening is empty or longer than 1,000 characters"]
    return {row["id"]: {"situation": scenario_line(row), "opening": opening}}, []


def write_briefs(rows: list[dict], engine, prompts: dict[str, Prompt], tools: dict[str, Tool], cfg, key,
                 journal=None) -> tuple[dict[str, dict], list[dict], Counter]:
    """Briefs for every row: (briefs by id, failures, counts). `key(row)`: the journal key of a row's brief."""
    done = journal.load() if journal is not None else {}
    briefs = {r["id"]: done[key(r)] for r in rows if key(r) in done}
    counts = Counter(journal_hits=len(briefs))
    pending = [r for r in rows if r["id"] not in briefs]
    problems: dict[str, list[str]] = {r["id"]: [] for r in pending}
    for attempt in range(cfg.max_attempts):
        if not pending:
            break
        groups = [pending[i:i + cfg.per_call] for i in range(0, len(pending), cfg.per_call)]
        requests = brief_requests(groups, prompts, tools, cfg, attempt)
        for i, reply in engine.run(requests):
            group = groups[i]
            if isinstance(reply, BudgetExceeded):
                raise reply
            if isinstance(reply, CallFailed):
                for r in group:
                    problems[r["id"]].append(f"call failed: {reply}")
                continue
            got, wrong = (parse_opening(reply.text, group[0]) if cfg.per_call == 1
                          else parse_briefs(reply.text, {r["id"] for r in group}))
            counts["items_invalid"] += len(wrong)
            for row in group:
                if row["id"] in got:
                    briefs[row["id"]] = got[row["id"]]
                    if journal is not None:
                        journal.append(key(row), got[row["id"]])
            for r in group:
                if r["id"] not in got:
                    problems[r["id"]].append("; ".join(wrong) or "missing from the reply")
        pending = [r for r in pending if r["id"] not in briefs]
        counts["brief_calls"] += len(groups)
    failures = [{"id": r["id"], "stage": "brief", "detail": problems[r["id"]][-1],
                 "reason": "call_failed" if problems[r["id"]][-1].startswith("call failed") else "no_valid_brief"}
                for r in pending]
    return briefs, failures, counts


# --- 2. conversations -----------------------------------------------------------------------------
@dataclass
class Conversation:
    row: dict
    brief: dict
    system: str
    sample: int = 0
    messages: list[dict] = field(default_factory=list)
    turns: int = 0  # assistant answers in text so far
    rounds: int = 0  # tool rounds in the current assistant turn
    wants: str = "assistant"  # whose step is next: document | assistant | user | done
    document: str | None = None
    failure: tuple[str, str] | None = None
    tool_calls: int = 0
    tool_errors: Counter = field(default_factory=Counter)
    db: object = None

    def for_assistant(self) -> list[dict]:
        return [{"role": "system", "content": self.system}, *self.messages]

    def transcript(self) -> str:
        lines = []
        for m in self.messages:
            if m["role"] in ("user", "assistant") and m.get("content"):
                lines.append(f"{m['role']}: {m['content']}")
        return "\n".join(lines)


def axes_of(row: dict) -> dict:
    return {k: v for k, v in row.items() if k != "id"}


def start(row: dict, brief: dict, assistant_prompt: Prompt, database: Database, sample: int,
          mode: str = "conversation") -> Conversation:
    system = assistant_prompt.render(scenario=scenario_line(row), **axes_of(row))
    conv = Conversation(row, brief, system, sample, db=database.fresh(),
                        wants="document" if mode == "document" else "assistant")
    conv.messages.append({"role": "user", "content": brief["opening"]})
    return conv


def _take_turn(conv: Conversation, reply, tools: dict[str, Tool], cfg) -> None:
    # Ids unique within the conversation (a text-protocol model numbers its calls per turn), so each
    # tool message answers exactly one call, in the record and in the next request alike.
    calls = [{**call, "id": f"call_{conv.tool_calls + k + 1}"} for k, call in enumerate(reply.tool_calls or [])]
    if calls and conv.rounds < cfg.max_tool_rounds:
        conv.messages.append({"role": "assistant", "content": reply.text or None, "tool_calls": calls})
        for call in calls:
            fn = call.get("function") or {}
            content, error = execute(tools, conv.db, fn.get("name", ""), fn.get("arguments") or "{}")
            conv.tool_calls += 1
            if error:
                conv.tool_errors[error] += 1
            conv.messages.append({"role": "tool", "tool_call_id": call.get("id", ""), "name": fn.get("name", ""),
                                  "content": content})
        conv.rounds += 1
        return
    if not reply.text.strip():
        conv.failure, conv.wants = ("no_final_answer", "tool calls past max_tool_rounds, or an empty reply"), "done"
        return
    if reply.truncated:
        conv.failure, conv.wants = ("truncated", "the final answer was cut off at max_tokens"), "done"
        return
    conv.messages.append({"role": "assistant", "content": reply.text.strip()})
    conv.turns, conv.rounds = conv.turns + 1, 0
    conv.wants = "done" if conv.turns >= cfg.turns else "user"


def converse(convs: list[Conversation], assistant, user, tools: dict[str, Tool], prompts: dict[str, Prompt],
             cfg) -> None:
    """Advance every conversation to its end (or its failure). A model on this machine answers each step
    of all of them in device batches (waves); hosted providers get each conversation's next request as
    soon as its last reply is in, so the rate limit never idles at the end of a wave."""
    decl = declarations(tools)
    if assistant.provider.batches_on_device or user.provider.batches_on_device:
        return _converse_in_waves(convs, assistant, user, tools, decl, prompts, cfg)
    from concurrent.futures import ThreadPoolExecutor, as_completed

    def advance(conv: Conversation) -> None:
        while conv.wants != "done":
            role = conv.wants
            engine = assistant if role == "assistant" else user
            _take(conv, role, engine.one(_request(role, conv, decl, prompts, cfg)), tools, cfg)

    workers = max(1, min(len(convs), max(assistant.workers(), user.workers())))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="conversation") as pool:
        futures = [pool.submit(advance, c) for c in convs]
        try:
            for f in as_completed(futures):
                f.result()  # a budget stop or a setup problem: raised here
        finally:
            for f in futures:
                f.cancel()


def _converse_in_waves(convs, assistant, user, tools, decl, prompts, cfg) -> None:
    while active := [c for c in convs if c.wants != "done"]:
        for role, engine in (("document", user), ("assistant", assistant), ("user", user)):
            group = [c for c in active if c.wants == role]
            if group:
                for i, reply in engine.run([_request(role, c, decl, prompts, cfg) for c in group]):
                    _take(group[i], role, reply, tools, cfg)


def _take(conv: Conversation, role: str, reply, tools: dict[str, Tool], cfg) -> None:
    """One step's reply into the conversation: its turn, a failure, or the budget's stop (raised)."""
    if isinstance(reply, BudgetExceeded):
        raise reply
    if isinstance(reply, CallFailed):
        conv.failure, conv.wants = ("call_failed", str(reply)), "done"
    elif role == "assistant":
        _take_turn(conv, reply, tools, cfg)
    elif role == "document":
        _take_document(conv, reply)
    elif reply.text.strip():
        conv.messages.append({"role": "user", "content": reply.text.strip()})
        conv.wants = "assistant"
    else:
        conv.failure, conv.wants = ("no_user_message", "the simulated user wrote nothing"), "done"


def _request(role: str, conv: Conversation, decl: list[dict], prompts: dict[str, Prompt], cfg):
    if role == "assistant" and decl:
        # The conversation's first reply may be forced to call a tool; after a tool result the model decides.
        choice = cfg.tool_choice if conv.turns == 0 and conv.rounds == 0 else "auto"
        return ToolTurnRequest(conv.for_assistant(), decl, cfg.temperature, cfg.max_tokens, sample=conv.sample,
                               tool_choice=choice)
    if role == "assistant":
        return CompleteRequest(conv.for_assistant(), cfg.temperature, cfg.max_tokens, sample=conv.sample)
    values = {"scenario": scenario_line(conv.row), "situation": conv.brief["situation"],
              "opening": conv.brief["opening"], "conversation": conv.transcript(), **axes_of(conv.row)}
    if role == "document":
        return CompleteRequest([{"role": "user", "content": prompts["document"].render(**values)}], cfg.temperature,
                               cfg.document_tokens, sample=conv.sample)
    return CompleteRequest([{"role": "user", "content": prompts["user"].render(**values)}], cfg.temperature,
                           cfg.max_tokens, sample=conv.sample)


def worst_case_steps(cfg, prompts: dict[str, Prompt], decl: list[dict]) -> list:
    """One conversation's requests at their largest, for a plan made before paying: every assistant turn
    uses all max_tool_rounds, every reply and tool result is max_tokens long (a result is assumed no longer
    than a reply), and each step sends the whole history so far, with the tools' declarations."""
    reply = "x" * 4 * cfg.max_tokens  # ~4 characters a token
    tools_text = json.dumps(decl)
    system = {"role": "system", "content": prompts["assistant"].render() + tools_text}
    opening = {"role": "user", "content": "x" * 400}  # a brief's opening: ~100 tokens
    if cfg.mode == "document":
        document = CompleteRequest([{"role": "user", "content": prompts["document"].render()}], cfg.temperature,
                                   cfg.document_tokens)
        answer = CompleteRequest([system, {"role": "user", "content": "x" * (400 + 4 * cfg.document_tokens)}],
                                 cfg.temperature, cfg.max_tokens)
        return [document, answer]
    steps, history = [], [system, opening]
    for turn in range(cfg.turns):
        for rounds in range(cfg.max_tool_rounds + 1):
            steps.append(ToolTurnRequest(list(history), decl, cfg.temperature, cfg.max_tokens))
            history.append({"role": "assistant", "content": reply})
            if rounds < cfg.max_tool_rounds:
                history.append({"role": "tool", "content": reply})
        if turn < cfg.turns - 1:
            transcript = "\n".join(str(m["content"]) for m in history[1:])
            steps.append(CompleteRequest([{"role": "user", "content": prompts["user"].render(conversation=transcript)}],
                                         cfg.temperature, cfg.max_tokens))
            history.append({"role": "user", "content": reply})
    return steps


def _take_document(conv: Conversation, reply) -> None:
    if not reply.text.strip() or reply.truncated:
        conv.failure, conv.wants = ("no_document", "the document was empty or cut off at document_tokens"), "done"
        return
    conv.document = reply.text.strip()
    conv.messages[-1]["content"] = f"{conv.brief['opening']}\n\n{conv.document}"
    conv.wants = "assistant"


def to_record(conv: Conversation, tools: dict[str, Tool]) -> dict:
    axes = {k: v for k, v in conv.row.items() if k != "id" and not k.endswith("_value")}
    record = {"id": f"gen-{conv.row['id']}", "messages": conv.for_assistant(), "tags": {**axes, "source": "generate"},
              "generation": {"scenario": conv.row, "situation": conv.brief["situation"], "attempt": conv.sample,
                             "tool_calls": conv.tool_calls, "tool_errors": dict(conv.tool_errors)}}
    if tools:
        record["tools"] = declarations(tools)
    if conv.document is not None:
        record["document"] = conv.document
    return record


class Gate:
    """Reject before accepting: an exact or near duplicate of an accepted conversation's answers, or
    answers carrying a known template (detect_templates' phrases and regexes)."""

    def __init__(self, patterns: list[dict], div):
        self.patterns, self.div = patterns, div
        self.seen: dict[str, str] = {}  # normalised answers -> the conversation that has them
        self.shingled: list[tuple[str, set]] = []

    def check(self, record: dict) -> tuple[str, str] | None:
        text = answers(record)
        norm = " ".join(text.lower().split())
        if norm in self.seen:
            return "duplicate", f"the same answers as {self.seen[norm]}"
        mine = shingles(text, self.div.shingle)
        twin = next((rid for rid, sh in self.shingled if jaccard(mine, sh) >= self.div.threshold), None)
        if twin:
            return "near_duplicate", f"of {twin}"
        hit = match_patterns([text], self.patterns)[0]
        if hit:
            return "templated", f"carries {', '.join(hit)}"
        return None

    def accept(self, record: dict) -> None:
        text = answers(record)
        self.seen[" ".join(text.lower().split())] = record["id"]
        self.shingled.append((record["id"], shingles(text, self.div.shingle)))


def answers(record: dict) -> str:
    return "\n".join(m["content"] for m in record["messages"] if m["role"] == "assistant" and m.get("content"))


def generate_conversations(rows: list[dict], briefs: dict[str, dict], key, assistant, user, tools, database,
                           prompts: dict[str, Prompt], cfg, gate: Gate, journal=None) -> tuple[list[dict], list[dict], Counter]:
    """A conversation for every row with a brief: (accepted records in plan order, failures, counts).
    `key(row)`: the journal key of a row's conversation (what decides it). A rejected or failed one is
    tried again with a new sample, up to max_attempts; a failed call is not journaled (the next run retries)."""
    done = journal.load() if journal is not None else {}
    accepted, failures, counts = {}, [], Counter()
    for row in rows:  # resumed first, in plan order, so the gate sees them before anything new
        record = done.get(key(row))
        if record is not None:
            accepted[row["id"]] = record
            gate.accept(record)
            counts["journal_hits"] += 1
    pending = [r for r in rows if r["id"] in briefs and r["id"] not in accepted]
    last: dict[str, tuple[str, str]] = {}
    for attempt in range(cfg.max_attempts):
        if not pending:
            break
        convs = [start(r, briefs[r["id"]], prompts["assistant"], database, attempt, cfg.mode) for r in pending]
        converse(convs, assistant, user, tools, prompts, cfg)
        pending = []
        for conv in convs:
            counts["tool_calls"] += conv.tool_calls
            counts.update({f"tool_error_{k}": v for k, v in conv.tool_errors.items()})
            record = None if conv.failure else to_record(conv, tools)
            problem = conv.failure or gate.check(record)
            if problem:
                counts[f"rejected_{problem[0]}"] += 1
                last[conv.row["id"]] = problem
                if problem[0] != "call_failed":
                    pending.append(conv.row)
                continue
            gate.accept(record)
            accepted[conv.row["id"]] = record
            if journal is not None:
                journal.append(key(conv.row), record)
    failures = [{"id": r["id"], "stage": "conversation", "reason": last[r["id"]][0], "detail": last[r["id"]][1]}
                for r in rows if r["id"] in briefs and r["id"] not in accepted]
    return [accepted[r["id"]] for r in rows if r["id"] in accepted], failures, counts
