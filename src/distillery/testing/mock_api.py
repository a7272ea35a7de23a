"""A loopback HTTP server that answers in the vendors' wire formats, with faults on request.

For tests and bench/: the real SDKs are pointed at it by base URL, so their request building,
response parsing and error classes are exercised, not mocked.

    with MockAPI(latency_s=0.2, rps=20) as api:
        api.url            # http://127.0.0.1:PORT   (anthropic, mistral, huggingface)
        api.url + "/v1"    # openai_compat, together

Routes: POST …/messages (Anthropic), POST …/chat/completions (OpenAI, Together, Mistral, Hugging Face).
An oracle prompt (a JSON reply with "scores") gets deterministic scores for the dimensions named in
the tool / response-format schema or, failing that, in the prompt; anything else gets a short text.

Faults are asked for by the prompt itself, so a test corpus says what happens to each record:
`FAULT:<kind>` on every request, `FAULT:<kind>x<n>` on the first n requests for that prompt.
Kinds: 401, 403, 404, 429 (with Retry-After), 500, 503, 529 (overloaded), slow (answers after `slow_s`),
truncated (a 200 whose JSON body is cut), nonjson (a 200 with an HTML body),
missing_dim (valid JSON without the first dimension).
"""
from __future__ import annotations

import hashlib
import json
import random
import re
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

FAULT = re.compile(r"FAULT:(\w+?)(?:x(\d+))?\b")


class MockAPI:
    def __init__(self, *, latency_s: float = 0.0, rps: float | None = None, slow_s: float = 3.0,
                 retry_after_s: float = 1.0, json_object_only: bool = False):
        """`json_object_only`: answer like llama.cpp's server, which rejects a `json_schema` response
        format with HTTP 500 and takes `{"type": "json_object", "schema": …}`."""
        self.latency_s, self.rps, self.slow_s, self.retry_after_s = latency_s, rps, slow_s, retry_after_s
        self.json_object_only = json_object_only
        self.lock = threading.Lock()
        self.statuses: Counter = Counter()
        self.faults_served: Counter = Counter()
        self.seen: Counter = Counter()  # requests per (fault kind, prompt digest)
        self.bodies: list[str] = []  # every request body, for tests that look for leaks
        self.accepted_at: list[float] = []
        self.in_flight = self.max_in_flight = 0
        self._tokens = rps or 0.0
        self._refill_at = time.monotonic()
        api = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):  # quiet
                pass

            def do_POST(self):  # noqa: N802 - the http.server name
                body = self.rfile.read(int(self.headers.get("content-length") or 0)).decode()
                try:
                    status, headers, payload = api.answer(self.path, json.loads(body or "{}"), body)
                except Exception as exc:  # noqa: BLE001 - a bug here must show as a 500, not a hang
                    status, headers, payload = 500, {}, json.dumps({"error": {"message": repr(exc)}})
                data = payload.encode()
                try:
                    self.send_response(status)
                    self.send_header("content-type", headers.pop("content-type", "application/json"))
                    for k, v in headers.items():
                        self.send_header(k, v)
                    self.send_header("content-length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (a timeout test)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> "MockAPI":
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

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
        dims = _dimensions(req, prompt)
        rng = random.Random(hashlib.sha256(prompt.encode()).hexdigest())
        if dims:
            scores = {d: rng.randint(0, 10) for d in dims}
            if fault == "missing_dim":
                scores.pop(dims[0])
            data = {"scores": scores, "reasoning": "mock"}
        else:
            data = None
        text = json.dumps(data) if data else "A mock answer " + " ".join(
            rng.choice(["clear", "short", "useful", "plain", "kind"]) for _ in range(8))
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
