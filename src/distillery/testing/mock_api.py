"""A loopback HTTP server that answers in the vendors' wire formats, with faults on request.

For tests and bench/: the real SDKs are pointed at it by base URL, so their request building,
response parsing and error classes are exercised, not mocked.

    with MockAPI(latency_s=0.2, rps=20) as api:
        api.url            # http://127.0.0.1:PORT   (anthropic, mistral, huggingface)
        api.url + "/v1"    # openai_compat, together

Routes: POST …/messages (Anthropic), POST …/chat/completions (OpenAI, Together, Mistral, Hugging Face).
An oracle prompt (a JSON reply with "scores") gets deterministic scores for the dimensions named in
the tool / response-format schema or, failing that, in the prompt; a pairwise judge's prompt a `better: …`
line (the answer with more distinct words wins); anything else gets a short text.

Faults are asked for by the prompt itself, so a test corpus says what happens to each record:
`FAULT:<kind>` on every request, `FAULT:<kind>x<n>` on the first n requests for that prompt.
Kinds: 401, 403, 404, 429 (with Retry-After), 500, 503, 529 (overloaded), slow (answers after `slow_s`),
truncated (a 200 whose JSON body is cut), nonjson (a 200 with an HTML body),
missing_dim (valid JSON without the first dimension).

A request that offers tools (OpenAI `tools`, or Anthropic `tools` without a forced tool_choice) is answered
like a small tool-using model, in each vendor's wire format: while the conversation does not end in tool
results, it calls the FIRST tool (OpenAI/Mistral `tool_calls` with finish_reason "tool_calls"; Anthropic a
`tool_use` block with stop_reason "tool_use"), each required argument being the first `enum` value, else a
word of the user's last message, else "x"; after tool results it answers "According to the tool: <the
results' first 200 characters>". Tool faults: badargs (arguments that are not JSON; for Anthropic, whose
input is always an object, the first required key is missing), unknowntool (calls "no_such_tool").
`tools_unsupported=True` answers any request with tools as vLLM does without --enable-auto-tool-choice;
`object_arguments=True` sends OpenAI-style arguments as a JSON object, not a string, as TGI does.

`stop()` stops listening (and hangs up on kept-alive connections), `start()` listens again on the same port,
`restart()` does both; state is kept. Subclasses add routes by overriding `handle` (see mock_batches.py).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT = re.compile(r"FAULT:(\w+?)(?:x(\d+))?\b")
CUT_HEADER = "x-mock-cut"  # a handler header: send half the body, then close the connection


class MockAPI:
    def __init__(self, *, latency_s: float = 0.0, rps: float | None = None, slow_s: float = 3.0,
                 retry_after_s: float = 1.0, json_object_only: bool = False, tools_unsupported: bool = False,
                 object_arguments: bool = False):
        """`json_object_only`: answer like llama.cpp's server, which rejects a `json_schema` response
        format with HTTP 500 and takes `{"type": "json_object", "schema": …}`."""
        self.latency_s, self.rps, self.slow_s, self.retry_after_s = latency_s, rps, slow_s, retry_after_s
        self.json_object_only = json_object_only
        self.tools_unsupported = tools_unsupported
        self.object_arguments = object_arguments
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.faults_served: Counter = Counter()
        self.seen: Counter = Counter()  # requests per (fault kind, prompt digest)
        self.bodies: list[str] = []  # every request body, for tests that look for leaks
        self.accepted_at: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self._tokens = rps or 0.0
        self._refill_at = time.monotonic()
        self._connections: set = set()  # open client connections, closed by stop()
        self._thread: threading.Thread | None = None
        self.server = self._make_server(0)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"

    def _make_server(self, port: int) -> ThreadingHTTPServer:
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def setup(self):
                super().setup()
                with api.lock:
                    api._connections.add(self.connection)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with api.lock:
                        api._connections.discard(self.connection)

            def _read_body(self) -> bytes:
                if "chunked" in (self.headers.get("transfer-encoding") or "").lower():
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if not size:
                            self.rfile.readline()
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                return self.rfile.read(int(self.headers.get("content-length") or 0))

            def _handle(self):
                raw = self._read_body()
                try:
                    status, headers, payload = api.handle(self.command, self.path, self.headers, raw)
                except Exception as exc:  # noqa: BLE001 - a bug here must show as a 500, not a hang
                    status, headers, payload = 500, {}, json.dumps({"error": {"message": repr(exc)}})
                data = payload if isinstance(payload, bytes) else payload.encode()
                headers = dict(headers)
                cut = headers.pop(CUT_HEADER, None)  # send the full length, half the bytes, then hang up
                try:
                    self.send_response(status)
                    self.send_header("content-type", headers.pop("content-type", "application/json"))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[: len(data) // 2] if cut else data)
                    if cut:
                        self.wfile.flush()
                        self.close_connection = True
                        self.connection.shutdown(socket.SHUT_RDWR)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    self.close_connection = True  # the client gave up (a timeout test)

            do_POST = do_GET = do_PUT = do_DELETE = _handle  # noqa: N815 - the http.server names

        server = ThreadingHTTPServer(("127.0.0.1", port), Handler, bind_and_activate=False)
        server.allow_reuse_address = True  # restart() binds the same port again
        server.daemon_threads = True
        try:
            server.server_bind()
            server.server_activate()
        except OSError:
            server.server_close()
            raise
        return server

    def start(self) -> "MockAPI":
        """Listen (again, on the same port after stop()); a no-op while listening."""
        with self.lock:
            if self._thread is not None:
                return self
            if self.server is None:
                self.server = self._make_server(self.port)
            # A short poll interval: shutdown() waits up to one interval, and tests start many servers.
            self._thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05},
                                            daemon=True)
            self._thread.start()
        return self

    def stop(self, close_connections: bool = True) -> None:
        """Stop listening; with `close_connections`, also hang up on clients' kept-alive connections, so
        the next call through a pooled connection fails as it would against a server that went away."""
        server, thread = self.server, self._thread
        if server is None:
            return
        if thread is not None:
            server.shutdown()
        server.server_close()
        with self.lock:
            self.server, self._thread = None, None
            connections = list(self._connections) if close_connections else []
        for conn in connections:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def restart(self) -> None:
        """Stop listening, then listen again on the same port; all state is kept."""
        self.stop()
        self.start()

    def __enter__(self) -> "MockAPI":
        return self.start()

    def __exit__(self, *exc):
        self.stop(close_connections=False)

    def handle(self, method: str, path: str, headers, raw: bytes) -> tuple[int, dict, str | bytes]:
        """One HTTP request: (status, headers, payload). Subclasses add routes and fall back to this."""
        if method != "POST":
            return 501, {}, json.dumps({"error": {"message": f"unsupported method {method}"}})
        body = raw.decode()
        return self.answer(path, json.loads(body or "{}"), body)

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def _take_token(self) -> bool:
        """A token bucket of `rps` tokens a second, holding at most one second's worth."""
        if not self.rps:
            return True
        now = time.monotonic()
        self._tokens = min(self.rps, self._tokens + (now - self._refill_at) * self.rps)
        self._refill_at = now
        if self._tokens >= 1:
            self._tokens -= 1
            return True
        return False

    def wait_idle(self, timeout_s: float = 10.0) -> None:
        """Wait for requests still being answered (a slow one its client gave up on) to finish."""
        deadline = time.monotonic() + timeout_s
        while self.in_flight and time.monotonic() < deadline:
            time.sleep(0.02)

    def answer(self, path: str, req: dict, raw: str) -> tuple[int, dict, str]:
        path = path.split("?")[0].rstrip("/")
        if path not in ("/v1/messages", "/v1/chat/completions"):
            with self.lock:
                self.statuses[404] += 1
            return 404, {}, json.dumps({"error": {"message": f"no route {path}"}})
        anthropic = path.endswith("/messages")
        prompt = _prompt_text(req)
        with self.lock:
            self.bodies.append(raw)
            if not self._take_token():
                self.statuses[429] += 1
                return self._error(429, anthropic, "rate limit exceeded")
            fault = None
            for kind, times in FAULT.findall(prompt):
                key = (kind, hashlib.sha256(prompt.encode()).hexdigest())
                self.seen[key] += 1
                if not times or self.seen[key] <= int(times):
                    fault = kind
                    self.faults_served[kind] += 1
                    break
            self.accepted_at.append(time.monotonic())
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            time.sleep(self.latency_s + (self.slow_s if fault == "slow" else 0))
            status, headers, payload = self._reply(req, prompt, anthropic, fault)
        finally:
            with self.lock:
                self.in_flight -= 1
                self.statuses[status] += 1
        return status, headers, payload

    def _reply(self, req, prompt, anthropic, fault):
        if fault in ("401", "403", "404", "429", "500", "503", "529"):
            return self._error(int(fault), anthropic, {"429": "rate limited", "529": "Overloaded",
                                                       "401": "Incorrect API key provided: sk-fake",
                                                       "403": "Forbidden: this key may not use this model",
                                                       "404": "The model `test-model` does not exist"}.get(fault, "boom"))
        fmt = req.get("response_format") or {}
        if self.json_object_only and isinstance(fmt, dict) and fmt.get("type") not in (None, "text", "json_object"):
            return self._error(500, anthropic, "1 validation error for ResponseFormat type: Input should be "
                                               "'text' or 'json_object' [type=literal_error, input_value='json_schema']")
        if fault == "nonjson":
            return 200, {"content-type": "text/html"}, "<html><body>502 Bad Gateway</body></html>"
        # A tool turn: tools on offer, the model free to call one or told to call some tool ("required", Mistral's
        # "any", Anthropic's {"type": "any"}); a choice naming one tool is a forced JSON reply, answered below.
        offers_tools = bool(req.get("tools")) and (req.get("tool_choice") or {}) in (
            {}, "auto", {"type": "auto"}, "required", "any", {"type": "any"})
        if offers_tools and self.tools_unsupported:
            return self._error(400, anthropic, '"auto" tool choice requires --enable-auto-tool-choice and '
                                               '--tool-call-parser to be set')
        if offers_tools:
            body = _tool_turn(req, prompt, anthropic, fault, self.object_arguments)
            payload = json.dumps(body)
            return 200, {}, payload[: len(payload) // 2] if fault == "truncated" else payload
        dims = _dimensions(req, prompt)
        rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
        asked = re.findall(r'^\{"id": "([^"]+)"', prompt, flags=re.M)  # generate's briefs: one item per scenario
        if asked and not dims:
            briefs = [{"id": sid, "situation": f"mock situation {rng.randrange(10**6)}",
                       "opening": f"What is the weather in {rng.choice(BRIEF_CITIES)} {rng.choice(BRIEF_DAYS)}? "
                                  f"(mock {rng.randrange(10**6)})"} for sid in asked]
            data = None
            prompt_briefs = json.dumps(briefs)
        else:
            prompt_briefs = None
        if dims:
            scores = {d: rng.randint(0, 10) for d in dims}
            if fault == "missing_dim":
                scores.pop(dims[0])
            data = {"scores": scores, "reasoning": "mock"}
        else:
            data = None
        text = json.dumps(data) if data else prompt_briefs or _judgement(prompt) or (  # names a city and a day
            f"A mock answer about {rng.choice(BRIEF_CITIES)} {rng.choice(BRIEF_DAYS)}: "
            + " ".join(rng.choice(["clear", "short", "useful", "plain", "kind"]) for _ in range(8)))
        usage_in, usage_out = len(prompt) // 4, len(text) // 4
        model = req.get("model") or "mock"
        if anthropic:
            block = ({"type": "tool_use", "id": "toolu_1", "name": req["tools"][0]["name"], "input": data}
                     if data and req.get("tools") else {"type": "text", "text": text})
            body = {"id": "msg_1", "type": "message", "role": "assistant", "model": model, "content": [block],
                    "stop_reason": "tool_use" if block["type"] == "tool_use" else "end_turn",
                    "stop_sequence": None, "usage": {"input_tokens": usage_in, "output_tokens": usage_out}}
        else:
            body = {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out,
                              "total_tokens": usage_in + usage_out}}
        payload = json.dumps(body)
        if fault == "truncated":
            payload = payload[: len(payload) // 2]
        return 200, {}, payload

    def _error(self, status: int, anthropic: bool, message: str):
        headers = {"retry-after": f"{self.retry_after_s:g}"} if status in (429, 503, 529) else {}
        kind = {429: "rate_limit_error", 529: "overloaded_error"}.get(status, "api_error")
        body = ({"type": "error", "error": {"type": kind, "message": message}} if anthropic
                else {"error": {"message": message, "type": kind, "code": status}, "object": "error"})
        return status, headers, json.dumps(body)


def _judgement(prompt: str) -> str | None:
    """A pairwise judge's reply (prompts/judge.md asks for `better: 1|2|tie`): the answer with more distinct
    words wins, the same way in both orders; None for any other prompt."""
    if "`better: tie`" not in prompt:
        return None
    found = re.search(r"Answer 1:\n(.*?)\n\nAnswer 2:\n(.*?)\n\n", prompt, flags=re.S)
    if not found:
        return "better: tie"
    one, two = (len(set(a.split())) for a in found.groups())
    return "better: tie" if one == two else f"better: {1 if one > two else 2}"


BRIEF_CITIES = ["Paris", "Oslo", "Lima", "Tokyo", "Cairo", "Denver", "Hanoi", "Toronto", "Rome", "Seoul"]
BRIEF_DAYS = ["today", "tomorrow", "saturday", "sunday", "monday"]


def _prompt_text(req: dict) -> str:
    parts = [req.get("system") or ""] if isinstance(req.get("system"), str) else []
    for m in req.get("messages") or []:
        content = m.get("content")
        parts.append(content if isinstance(content, str) else json.dumps(content))
    return "\n".join(parts)


def _dimensions(req: dict, prompt: str) -> list[str]:
    """The score dimensions the caller wants: from its schema, else from the prompt's reply format."""
    schema = None
    if req.get("tools"):
        schema = req["tools"][0].get("input_schema")
    fmt = req.get("response_format") or {}
    if isinstance(fmt, dict) and fmt.get("json_schema"):
        schema = fmt["json_schema"].get("schema")
    elif isinstance(fmt, dict) and fmt.get("type") == "json_object" and isinstance(fmt.get("schema"), dict):
        schema = fmt["schema"]  # llama.cpp's form
    elif isinstance(fmt, dict) and isinstance(fmt.get("value"), dict):  # TGI's grammar shape (huggingface_hub)
        schema = fmt["value"]
    if schema:
        scores = (schema.get("properties") or {}).get("scores") or {}
        return list((scores.get("properties") or {}).keys())
    if "scores" in prompt and "JSON" in prompt:
        return re.findall(r'"(\w+)": <', prompt)
    return []


def _tool_turn(req: dict, prompt: str, anthropic: bool, fault: str | None, object_arguments: bool) -> dict:
    """One turn of a deterministic tool-using model: call the first tool, or answer from the tool results."""
    messages = req.get("messages") or []
    model, digest = req.get("model") or "mock", hashlib.sha256(prompt.encode()).hexdigest()
    usage_in = len(prompt) // 4
    results = _trailing_results(messages, anthropic)
    if results:
        text = "According to the tool: " + " | ".join(results)[:200]
        if anthropic:
            return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                    "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                    "usage": {"input_tokens": usage_in, "output_tokens": len(text) // 4}}
        return _chat_body(model, {"role": "assistant", "content": text}, "stop", usage_in, len(text) // 4)
    tool = req["tools"][0]
    name, schema = (tool["name"], tool.get("input_schema")) if anthropic else (
        tool["function"]["name"], tool["function"].get("parameters"))
    required = (schema or {}).get("required") or []
    args = {key: _argument((schema.get("properties") or {}).get(key) or {}, _last_user_text(messages))
            for key in required}
    if fault == "unknowntool":
        name = "no_such_tool"
    if anthropic:
        if fault == "badargs":  # an Anthropic input is always an object: a required key goes missing instead
            args = {k: v for k, v in args.items() if k != required[0]} if required else {"unexpected": "x"}
        return {"id": "msg_1", "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "tool_use", "id": f"toolu_{digest[:12]}", "name": name, "input": args}],
                "stop_reason": "tool_use", "stop_sequence": None,
                "usage": {"input_tokens": usage_in, "output_tokens": 20}}
    arguments = args if object_arguments else json.dumps(args)
    if fault == "badargs":
        arguments = json.dumps(args)[:-1]  # the closing brace is missing: not JSON
    call = {"id": f"call{digest[:5]}", "type": "function", "function": {"name": name, "arguments": arguments}}
    return _chat_body(model, {"role": "assistant", "content": None, "tool_calls": [call]}, "tool_calls", usage_in, 20)


def _chat_body(model: str, message: dict, finish_reason: str, usage_in: int, usage_out: int) -> dict:
    return {"id": "chatcmpl-1", "object": "chat.completion", "created": 0, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish_reason}],
            "usage": {"prompt_tokens": usage_in, "completion_tokens": usage_out, "total_tokens": usage_in + usage_out}}


def _trailing_results(messages: list[dict], anthropic: bool) -> list[str]:
    """The contents of the tool results the conversation ends with (none: the model has not called yet)."""
    if anthropic:
        last = messages[-1] if messages else {}
        blocks = last.get("content") if last.get("role") == "user" else None
        if not isinstance(blocks, list):
            return []
        return [b["content"] if isinstance(b.get("content"), str) else json.dumps(b.get("content"))
                for b in blocks if b.get("type") == "tool_result"]
    results = []
    for m in reversed(messages):
        if m.get("role") != "tool":
            break
        results.insert(0, m.get("content") if isinstance(m.get("content"), str) else json.dumps(m.get("content")))
    return results


def _last_user_text(messages: list[dict]) -> str:
    for m in reversed(messages):
        if m.get("role") != "user":
            continue
        content = m.get("content")
        if isinstance(content, str):
            return FAULT.sub("", content)
        texts = [b.get("text", "") for b in content or [] if isinstance(b, dict) and b.get("type") == "text"]
        if texts:
            return FAULT.sub("", " ".join(texts))
    return ""


def _argument(spec: dict, user_text: str):
    """A value for one required argument: the enum value the user's message names (else the first), else a
    word of the user's message, else "x". The word is the last capitalised one after the first (a name:
    "Weather in Paris?" gives "Paris"), else the longest."""
    if spec.get("enum"):
        return next((v for v in spec["enum"] if str(v).lower() in user_text.lower()), spec["enum"][0])
    if spec.get("type") in ("integer", "number"):
        number = re.search(r"\d+", user_text)
        return int(number.group()) if number else 1
    if spec.get("type") == "boolean":
        return True
    words = re.findall(r"[^\W\d_]+", user_text)
    names = [w for w in words[1:] if w[0].isupper()]
    return names[-1] if names else max(words, key=len) if words else "x"
