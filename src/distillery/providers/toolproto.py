"""Tool calling as plain text, for models without a native tool API (the local SmolLM2, the fake provider,
any provider as a fallback). Inside distillery messages and tools are always in the OpenAI format; this
module turns them into a prompt a plain chat model can follow, and its reply back into OpenAI tool calls.

    rendered = render(messages, tools)        # what the model sees
    text, calls = parse_reply(reply, messages) # what it asked for, as OpenAI `tool_calls`

The protocol:
1. A system message lists the tools, one compact JSON line each ({"name", "description", "parameters"}),
   merged into the conversation's first system message (or prepended when there is none).
2. The model calls a tool by writing `<tool_call>{"name": "...", "arguments": {...}}</tool_call>`, one block
   per call; the text before and between the blocks is its text. What follows the last block is dropped:
   the model has not seen the result yet, so anything it writes there is invented. Past calls are shown to it in that same form.
3. Tool results come back as a user message `<tool_result name="...">…</tool_result>` (consecutive results
   in one message), because small chat templates often reject the role "tool".
4. Each call gets a deterministic id: 9 hex characters of a hash of the turn's position, the block's index
   (and place, when a block holds a list) and its text. (9 alphanumerics is the one shape every vendor accepts; Mistral rejects
   any other.) A reply cut off inside a block (no closing tag) still yields that block.
5. A block is never dropped: JSON that does not parse keeps the raw text as `arguments` and the name found
   in it (else ""), so the tool executor answers "arguments are not valid JSON" or "unknown tool" and the
   model can try again. A parsed call's "arguments" may also be spelled "parameters"; without either it
   gets "{}"; arguments given as a string are passed on as that string.
6. A turn that must call a tool (tool_choice "required") starts the reply with `<tool_call>` where the
   provider continues a prefilled reply (the local model); elsewhere the instructions say it must call one.
A block may also hold a JSON list of calls (SmolLM2 was trained to write `<tool_call>[{…}, {…}]</tool_call>`).
A whole reply that is nothing but `{"name": ..., "arguments": ...}` (or a list of them: small models often
drop the tags) is read as calls; any other bare JSON stays text, since an answer may legitimately be JSON.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace

from distillery.providers.base import Completion

CALL = re.compile(r"<tool_call>(.*?)(?:</tool_call>|\Z)", re.DOTALL)
NAME = re.compile(r'"name"\s*:\s*"([^"]*)"')

INSTRUCTIONS = """You can call these tools:
{tools}

To call a tool, write one line per call, with the tool's name and its arguments as JSON, like this:
{example}
Each result comes back as <tool_result name="<tool name>">…</tool_result>. When you have what you need,
or no tool helps, answer in plain text without any <tool_call>."""
MUST_CALL = "Your next reply must be a tool call."
PREFILL = "<tool_call>{\"name\": \""


def render(messages: list[dict], tools: list[dict], tool_choice: str = "auto", prefill: bool = False) -> list[dict]:
    """The conversation as plain chat messages (system, user, assistant; text only) with the tools described.
    tool_choice "required": a last assistant message `<tool_call>` to continue (prefill), or else an instruction."""
    listing = "\n".join(json.dumps({"name": t["function"]["name"], "description": t["function"].get("description", ""),
                                    "parameters": t["function"].get("parameters") or {}},
                                   separators=(",", ":"), ensure_ascii=False) for t in tools)
    first = tools[0]["function"] if tools else {"name": "tool"}
    required = (first.get("parameters") or {}).get("required") or []
    props = (first.get("parameters") or {}).get("properties") or {}
    example = format_call(first["name"], json.dumps({k: _example_value(props.get(k) or {}) for k in required}))
    system = INSTRUCTIONS.format(tools=listing, example=example)
    if tool_choice == "required" and not prefill:
        system += "\n" + MUST_CALL
    out: list[dict] = []
    names: dict[str, str] = {}  # tool_call_id -> tool name, for results that do not carry their name
    for i, m in enumerate(messages):
        role, content = m["role"], m.get("content") or ""
        if role == "system" and i == 0:
            out.append({"role": "system", "content": f"{content}\n\n{system}" if content else system})
        elif role == "assistant" and m.get("tool_calls"):
            lines = [content] if content else []
            for call in m["tool_calls"]:
                fn = call.get("function") or {}
                names[call.get("id", "")] = fn.get("name", "")
                lines.append(format_call(fn.get("name", ""), fn.get("arguments", "{}")))
            out.append({"role": "assistant", "content": "\n".join(lines)})
        elif role == "tool":
            name = m.get("name") or names.get(m.get("tool_call_id", ""), "")
            block = f'<tool_result name="{name}">{content}</tool_result>'
            if out and out[-1].get("tool_results"):  # consecutive results share one user message
                out[-1]["content"] += "\n" + block
            else:
                out.append({"role": "user", "content": block, "tool_results": True})
        else:
            out.append({"role": role, "content": content})
    if not (messages and messages[0]["role"] == "system"):
        out.insert(0, {"role": "system", "content": system})
    if tool_choice == "required" and prefill:
        out.append({"role": "assistant", "content": PREFILL})
    return [{"role": m["role"], "content": m["content"]} for m in out]


def _example_value(schema: dict):
    """A value for the instructions' example call: the first allowed one where the schema lists them
    (a small model copies the example's shape, and "..." is not a city)."""
    if schema.get("enum"):
        return schema["enum"][0]
    return {"integer": 1, "number": 1, "boolean": True}.get(schema.get("type"), "...")


def format_call(name: str, arguments: str) -> str:
    """One call as the model writes it; arguments that are not JSON are shown as the string they were."""
    try:
        args = json.loads(arguments)
    except (TypeError, ValueError):
        args = arguments
    return "<tool_call>" + json.dumps({"name": name, "arguments": args}, ensure_ascii=False) + "</tool_call>"


def parse_reply(reply: str, messages: list[dict]) -> tuple[str, list[dict] | None]:
    """(text outside the calls, OpenAI tool calls or None). See the module docstring for malformed calls."""
    turn = len(messages)  # the reply's position in the conversation: ids differ from turn to turn
    found = list(CALL.finditer(reply))
    blocks = [m.group(1) for m in found]
    if blocks:
        text = CALL.sub("", reply[:found[-1].end()]).strip()
    elif _is_bare_call(reply.strip()):
        blocks, text = [reply.strip()], ""
    else:
        return reply.strip(), None
    calls = []
    for index, block in enumerate(blocks):
        for sub, (name, arguments) in enumerate(_read_block(block.strip())):
            calls.append({"id": call_id(f"{turn}:{index}:{sub}:{block}"), "type": "function",
                          "function": {"name": name, "arguments": arguments}})
    return text, calls


def _read_block(text: str) -> list[tuple[str, str]]:
    """(name, arguments) for each call in one block: an object, or a list of them (SmolLM2's trained form)."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    items = body if isinstance(body, list) and body else [body]
    out = []
    for item in items:
        if isinstance(item, dict) and isinstance(item.get("name"), str):
            args = item.get("arguments", item.get("parameters", {}))
            out.append((item["name"], args if isinstance(args, str) else json.dumps(args, ensure_ascii=False)))
        else:  # not JSON, or no "name": kept, for the executor to report
            raw = text if item is body else json.dumps(item, ensure_ascii=False)
            found = NAME.search(raw)
            out.append((found.group(1) if found else "", raw))
    return out


def _is_bare_call(text: str) -> bool:
    """A whole reply that is clearly a call without its tags: {"name": "<str>", "arguments": …}, or a list of those."""
    try:
        body = json.loads(text)
    except ValueError:
        return False
    items = body if isinstance(body, list) and body else [body]
    return all(isinstance(i, dict) and isinstance(i.get("name"), str) and "arguments" in i for i in items)


def call_id(seed: str) -> str:
    """A deterministic tool call id: 9 hex characters, valid for OpenAI, Anthropic and Mistral alike."""
    return hashlib.sha256(seed.encode()).hexdigest()[:9]


def is_error_result(content) -> bool:
    """A tool result that reports a failure: a JSON object with an "error" key, as the executor
    (distillery.generation.tools) writes it. Used for Anthropic's `is_error`."""
    try:
        body = json.loads(content) if isinstance(content, str) else content
    except ValueError:
        return False
    return isinstance(body, dict) and "error" in body


def completion_from_reply(raw: Completion, messages: list[dict]) -> Completion:
    """A plain completion, read as a tool turn: calls parsed out, finish_reason "tool_calls" when it called
    (unless it was cut off, which stays visible as "length")."""
    text, calls = parse_reply(raw.text, messages)
    meta = dict(raw.meta, protocol="text")
    if calls and not raw.truncated:
        meta["finish_reason"] = "tool_calls"
    meta.setdefault("finish_reason", "stop")
    return Completion(text, raw.input_tokens, raw.output_tokens, raw.provider, raw.model, raw.scores, meta, calls)


def complete_tools(provider, messages: list[dict], tools: list[dict], *, temperature=None, max_tokens=None,
                   seed=None, tool_choice: str = "auto") -> Completion:
    return complete_tools_batch(provider, [messages], tools, temperature=temperature, max_tokens=max_tokens,
                                seeds=[seed], tool_choice=tool_choice, batched=False)[0]


def complete_tools_batch(provider, batch: list[list[dict]], tools: list[dict], *, temperature=None,
                         max_tokens=None, seeds=None, tool_choice: str = "auto", batched: bool = True) -> list[Completion]:
    prefill = tool_choice == "required" and provider.continues_prefill
    rendered = [render(m, tools, tool_choice, prefill) for m in batch]
    if prefill:  # one call, ended at its closing tag
        raws = provider.complete_batch(rendered, temperature=temperature, max_tokens=max_tokens, seeds=seeds,
                                       stop=["</tool_call>"])
    elif batched:
        raws = provider.complete_batch(rendered, temperature=temperature, max_tokens=max_tokens, seeds=seeds)
    else:
        raws = [provider.complete(rendered[0], temperature=temperature, max_tokens=max_tokens, seed=(seeds or [None])[0])]
    if prefill:  # the reply continues the prefill: read them together
        raws = [replace(raw, text=PREFILL + raw.text) for raw in raws]
    return [completion_from_reply(raw, m) for raw, m in zip(raws, batch)]
