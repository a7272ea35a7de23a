"""MockAPI plus the batch APIs of Anthropic, OpenAI, Together and Mistral, in their wire formats.

The real, pinned SDKs are pointed at it, as at MockAPI (its live routes keep working on the same port):

    with MockBatchAPI(turnaround_s=0.2) as api:
        anthropic.Anthropic(api_key="sk-test", base_url=api.url, max_retries=0)
        openai.OpenAI(api_key="sk-test", base_url=api.url + "/v1", max_retries=0)
        together.Together(api_key="sk-test", base_url=api.url, max_retries=0)   # together 3.x paths carry /v1
        mistralai.client.Mistral(api_key="sk-test", server_url=api.url)

(`/v1/v1/…` is taken as `/v1/…`, so a Together client with base_url `api.url + "/v1"` works too.)

Routes: Anthropic /v1/messages/batches (create, list, retrieve, cancel, results, delete); OpenAI /v1/files
(multipart upload), /v1/files/{id}/content, /v1/batches (create, list, retrieve, cancel); Together the same paths,
its upload being the SDK's three steps (POST /v1/files -> 302 with Location and X-Together-File-Id, PUT the bytes
to Location, POST /v1/files/{id}/preprocess); Mistral /v1/files (multipart), /v1/files/{id}/content,
/v1/batch/jobs (create from input_files or inline requests, list with filters, get, cancel).
OpenAI and Together share /v1/batches: a batch is Together's when its input file came through Together's upload
(and a list is Together's when the User-Agent says Together).

Every request in a batch is answered by MockAPI's own reply logic, so a result carries byte for byte the body
the live route gives for the same request. A batch is in progress for `turnaround_s` after creation (counts
advancing with time, where the vendor reports them before the end), then ends in the vendor's terminal state.

Faults: prompt markers `FAULT:batch_error` (errored in every batch), `FAULT:batch_errorx<n>` (errored in the
first n batches holding that prompt) and MockAPI's live markers (an error status becomes an errored result;
truncated/nonjson an errored result with status 502; missing_dim a reply without the first dimension), counted
in the same `seen` counter as live calls; `expire_next(keep)`, `fail_next(keep)`, cancel routes,
`cut_next_download()`, `stop()`/`start()`/`restart()` (same port, state kept); request limits in `limits`.
"""
from __future__ import annotations

import bisect
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote

from distillery.testing.mock_api import CUT_HEADER, FAULT, MockAPI, _prompt_text

LIMITS = {"anthropic": 100_000, "openai": 50_000, "together": 50_000, "mistral": 1_000_000}
ANTHROPIC_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
ERROR_FAULTS = {"batch_error", "401", "403", "404", "429", "500", "503", "529", "truncated", "nonjson"}
TERMINAL = ("completed", "expired", "failed", "cancelled")

# Vendor status names for the mock's phases.
STATUS = {
    "anthropic": {"validating": "in_progress", "running": "in_progress", "finalizing": "in_progress",
                  "cancelling": "canceling", "completed": "ended", "expired": "ended", "failed": "ended",
                  "cancelled": "ended"},
    "openai": {"validating": "validating", "running": "in_progress", "finalizing": "finalizing",
               "cancelling": "cancelling", "completed": "completed", "expired": "expired", "failed": "failed",
               "cancelled": "cancelled"},
    "together": {"validating": "VALIDATING", "running": "IN_PROGRESS", "finalizing": "IN_PROGRESS",
                 "cancelling": "CANCELLED", "completed": "COMPLETED", "expired": "EXPIRED", "failed": "FAILED",
                 "cancelled": "CANCELLED"},
    "mistral": {"validating": "QUEUED", "running": "RUNNING", "finalizing": "RUNNING",
                "cancelling": "CANCELLATION_REQUESTED", "completed": "SUCCESS", "expired": "TIMEOUT_EXCEEDED",
                "failed": "FAILED", "cancelled": "CANCELLED"},
}


@dataclass
class Batch:
    """One batch, as the server keeps it (`api.batches[id]`)."""
    id: str
    vendor: str
    custom_ids: list[str]
    bodies: list[dict]  # the requests' bodies (Anthropic: params); emptied when the batch ends
    faults: dict[int, str]  # request index -> the fault served to it
    seq: int  # creation order
    created: float  # wall clock
    started: float  # monotonic
    endpoint: str = "/v1/chat/completions"
    model: str | None = None
    metadata: dict | None = None
    input_file_id: str | None = None
    input_bytes: int = 0
    mode: str = "completed"  # how it ends untouched: completed | expired | failed
    keep: int | None = None  # expired/failed: the requests processed before the end
    cancel_at: float | None = None  # monotonic time of the cancel call
    cancel_wall: float | None = None
    cancel_done: int = 0  # requests finished when it was cancelled
    error_indices: list[int] = field(default_factory=list)  # requests that will error (by their fault), sorted
    replies: list | None = None  # (ok, status, payload) per processed request, filled by a worker thread
    computed: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)
    finished: bool = False
    ended_wall: float | None = None
    counts: Counter = field(default_factory=Counter)  # at the end: succeeded / errored / expired / canceled / failed
    output_file_id: str | None = None
    error_file_id: str | None = None
    results: bytes | None = None  # Anthropic's results .jsonl
    status: str = ""  # the vendor status last reported

    @property
    def n(self) -> int:
        return len(self.custom_ids)


class MockBatchAPI(MockAPI):
    def __init__(self, *, turnaround_s: float = 0.5, key: str | None = None, **kwargs):
        """`key`: the one API key the batch routes accept (the others answer 401, as a vendor does)."""
        super().__init__(**kwargs)
        self.turnaround_s, self.key = turnaround_s, key
        self.cancel_s = turnaround_s / 4  # how long cancelling lasts before the batch is cancelled
        self.limits: dict[str, int] = dict(LIMITS)
        self.submitted: Counter = Counter()  # custom_id -> times it was in a created batch (all vendors)
        self.batches_created = 0
        self.uploads = 0
        self.downloads = 0
        self.batches: dict[str, Batch] = {}
        self.files: dict[str, dict] = {}
        self.batch_lock = threading.RLock()
        self._next: tuple[str, int] | None = None  # ("expired" | "failed", keep) for the next batch
        self._cut_next = False

    # ---- test controls -------------------------------------------------------------------------------------

    def expire_next(self, keep: int) -> None:
        """The next created batch ends expired, its first `keep` requests processed, the rest expired."""
        self._next = ("expired", keep)

    def fail_next(self, keep: int) -> None:
        """The next created batch ends failed (Anthropic: ended, the rest canceled) with `keep` results."""
        self._next = ("failed", keep)

    def cut_next_download(self) -> None:
        """The next results / file-content download sends the full content-length, half the bytes, and hangs up."""
        self._cut_next = True

    def batch_status(self, batch_id: str) -> str:
        b = self.batches[batch_id]
        return STATUS[b.vendor][self._phase(b)]

    # ---- routing ---------------------------------------------------------------------------------------------

    def handle(self, method, path, headers, raw):
        route, _, query = path.partition("?")
        route = route.rstrip("/") or "/"
        while route.startswith("/v1/v1/"):
            route = route[3:]
        q = parse_qs(query, keep_blank_values=True)
        parts = [unquote(p) for p in route.strip("/").split("/")]
        given = headers.get("x-api-key") or (headers.get("authorization") or "").removeprefix("Bearer ")
        if self.key is not None and parts[:1] == ["v1"] and given != self.key:
            vendor = "anthropic" if parts[1:2] == ["messages"] else "openai"
            answer = self._err(vendor, 401, "invalid x-api-key" if vendor == "anthropic" else
                               "Incorrect API key provided", "authentication_error")
        else:
            answer = self._route(method, parts, q, headers, raw)
        if answer is None:
            return super().handle(method, route + ("?" + query if query else ""), headers, raw)
        with self.lock:
            self.statuses[answer[0]] += 1
            if raw:
                self.bodies.append(raw.decode(errors="replace"))
        return answer

    def _route(self, method, parts, q, headers, raw):
        ua = (headers.get("user-agent") or "").lower()
        if parts[:1] == ["mock-upload"] and len(parts) == 2 and method == "PUT":
            return self._together_put(parts[1], raw)
        if parts[:1] != ["v1"]:
            return None
        p = parts[1:]
        if p[:2] == ["messages", "batches"]:
            rest = p[2:]
            if not rest:
                return (self._anthropic_create(raw) if method == "POST" else
                        self._list_anthropic(q) if method == "GET" else None)
            b = self.batches.get(rest[0])
            if b is None or b.vendor != "anthropic":
                return self._err("anthropic", 404, f"batch {rest[0]} not found", "not_found_error")
            if len(rest) == 1 and method == "GET":
                return 200, {}, self._json(b)
            if len(rest) == 1 and method == "DELETE":
                return self._anthropic_delete(b)
            if rest[1:] == ["cancel"] and method == "POST":
                return self._cancel(b)
            if rest[1:] == ["results"] and method == "GET":
                return self._anthropic_results(b)
            return None
        if p[:1] == ["files"]:
            if len(p) == 1 and method == "POST":
                return self._upload(headers, raw, ua)
            if len(p) == 1 and method == "GET":  # list: OpenAI (purpose filter, a page), Together (data)
                purpose = (q.get("purpose") or [None])[0]
                with self.batch_lock:
                    files = [_file_object(f) for f in self.files.values() if f.get("content") is not None
                             and (purpose is None or f.get("purpose") == purpose)]
                return 200, {}, json.dumps({"object": "list", "data": files[::-1], "has_more": False})
            f = self.files.get(p[1]) if len(p) > 1 else None
            if len(p) > 1 and f is None:
                return self._err(self._vendor_of(ua), 404, f"No such File object: {p[1]}")
            if len(p) == 2 and method == "GET":
                return 200, {}, json.dumps(_file_object(f))
            if len(p) == 2 and method == "DELETE":
                with self.batch_lock:
                    self.files.pop(p[1], None)
                return 200, {}, json.dumps({"id": p[1], "object": "file", "deleted": True})
            if p[2:] == ["content"] and method == "GET":
                return self._download(f)
            if p[2:] == ["preprocess"] and method == "POST":
                return 200, {}, json.dumps(_file_object(f))
            return None
        if p[:1] == ["batches"]:
            if len(p) == 1:
                if method == "POST":
                    return self._openai_create(raw, ua)
                if method == "GET":
                    return self._list_together() if "together" in ua else self._list_openai(q)
                return None
            b = self.batches.get(p[1])
            vendor = "together" if "together" in ua else "openai"
            if b is None or b.vendor not in ("openai", "together"):
                return self._err(vendor, 404, f"No batch found with id '{p[1]}'.")
            if len(p) == 2 and method == "GET":
                return 200, {}, self._json(b)
            if p[2:] == ["cancel"] and method == "POST":
                return self._cancel(b)
            return None
        if p[:2] == ["batch", "jobs"]:
            rest = p[2:]
            if not rest:
                return (self._mistral_create(raw) if method == "POST" else
                        self._list_mistral(q) if method == "GET" else None)
            b = self.batches.get(rest[0])
            if b is None or b.vendor != "mistral":
                return self._err("mistral", 404, f"Batch job {rest[0]} not found")
            if len(rest) == 1 and method == "GET":
                return 200, {}, self._json(b, inline=(q.get("inline") or [""])[0].lower() == "true")
            if len(rest) == 1 and method == "DELETE":
                with self.batch_lock:
                    self.batches.pop(b.id, None)
                return 200, {}, json.dumps({"id": b.id, "object": "batch", "deleted": True})
            if rest[1:] == ["cancel"] and method == "POST":
                return self._cancel(b)
            return None
        return None

    # ---- files -----------------------------------------------------------------------------------------------

    def _upload(self, headers, raw, ua):
        fields = _multipart(headers.get("content-type") or "", raw)
        if "file" not in fields:  # Together's first step: the file's description, answered by a presigned URL
            name = _text(fields.get("file_name")) or "upload.jsonl"
            fid = f"file-{uuid.uuid4()}"
            with self.batch_lock:
                self.files[fid] = {"id": fid, "vendor": "together", "purpose": _text(fields.get("purpose")),
                                   "filename": name, "content": None, "created_at": int(time.time()),
                                   "kind": "input"}
            return 302, {"location": f"{self.url}/mock-upload/{fid}", "x-together-file-id": fid}, "{}"
        filename, content = fields["file"]
        vendor = "mistral" if "mistral" in ua else "openai"
        fid = str(uuid.uuid4()) if vendor == "mistral" else f"file-{uuid.uuid4().hex[:24]}"
        with self.batch_lock:
            self.uploads += 1
            self.files[fid] = {"id": fid, "vendor": vendor, "purpose": _text(fields.get("purpose")) or "batch",
                               "filename": filename or "upload.jsonl", "content": content,
                               "created_at": int(time.time()), "kind": "input"}
            return 200, {}, json.dumps(_file_object(self.files[fid]))

    def _together_put(self, fid, raw):
        with self.batch_lock:
            f = self.files.get(fid)
            if f is None:
                return 404, {"content-type": "application/xml"}, "<Error><Code>NoSuchUpload</Code></Error>"
            f["content"] = raw
            self.uploads += 1
        return 200, {"etag": f'"{hashlib.md5(raw).hexdigest()}"'}, ""

    def _download(self, f):
        if f.get("content") is None:
            return self._err(f["vendor"], 404, f"file {f['id']} has no content")
        return self._send_file(f["content"], "application/octet-stream")

    def _send_file(self, data: bytes, content_type: str):
        headers = {"content-type": content_type}
        with self.batch_lock:
            self.downloads += 1
            if self._cut_next:
                self._cut_next = False
                headers[CUT_HEADER] = "1"
        return 200, headers, data

    def _new_file(self, vendor, batch, kind, content: bytes) -> str:
        fid = {"openai": f"file-{uuid.uuid4().hex[:24]}", "together": f"file-{uuid.uuid4()}"}.get(
            vendor, str(uuid.uuid4()))
        self.files[fid] = {"id": fid, "vendor": vendor, "purpose": "batch_output" if vendor == "openai" else
                           "batch-api" if vendor == "together" else "batch", "filename": f"{batch.id}_{kind}.jsonl",
                           "content": content, "created_at": int(time.time()), "kind": kind, "batch_id": batch.id}
        return fid

    # ---- creating a batch ------------------------------------------------------------------------------------

    def _anthropic_create(self, raw):
        text = raw.decode()
        try:
            requests = json.loads(text or "{}").get("requests")
        except json.JSONDecodeError as exc:
            return self._err("anthropic", 400, f"invalid JSON: {exc}")
        if not isinstance(requests, list) or not requests:
            return self._err("anthropic", 400, "requests: Field required (a non-empty list)")
        ids, bodies = [], []
        for i, r in enumerate(requests):
            cid = r.get("custom_id") if isinstance(r, dict) else None
            if not isinstance(cid, str) or not ANTHROPIC_CUSTOM_ID.match(cid):
                return self._err("anthropic", 400, f"requests.{i}.custom_id: String should match pattern "
                                                   f"'^[a-zA-Z0-9_-]{{1,64}}$'")
            if not isinstance(r.get("params"), dict):
                return self._err("anthropic", 400, f"requests.{i}.params: Field required")
            ids.append(cid)
            bodies.append(r["params"])
        return self._create("anthropic", ids, bodies, raw, endpoint="/v1/messages")

    def _openai_create(self, raw, ua):
        try:
            req = json.loads(raw.decode() or "{}")
        except json.JSONDecodeError as exc:
            return self._err("openai", 400, f"invalid JSON: {exc}")
        f = self.files.get(req.get("input_file_id") or "")
        vendor = "together" if (f and f["vendor"] == "together") or "together" in ua else "openai"
        if f is None or f.get("content") is None:
            return self._err(vendor, 404 if vendor == "openai" else 400,
                             f"No such File object: {req.get('input_file_id')}")
        endpoint = req.get("endpoint") or ""
        if endpoint != "/v1/chat/completions":
            return self._err(vendor, 400, f"endpoint: unsupported by the mock: {endpoint!r}")
        if vendor == "openai" and req.get("completion_window") != "24h":
            return self._err(vendor, 400, "completion_window: only '24h' is supported")
        parsed = self._parse_lines(vendor, f["content"], endpoint)
        if isinstance(parsed, tuple) and len(parsed) == 3:
            return parsed
        ids, bodies = parsed
        answer = self._create(vendor, ids, bodies, f["content"], endpoint=endpoint, metadata=req.get("metadata"),
                              input_file_id=f["id"], input_bytes=len(f["content"]),
                              model=req.get("model_id") if vendor == "together" else None)
        if vendor == "together" and answer[0] == 200:  # Together wraps the job
            return 201, answer[1], json.dumps({"job": json.loads(answer[2]), "warning": None})
        return answer

    def _mistral_create(self, raw):
        try:
            req = json.loads(raw.decode() or "{}")
        except json.JSONDecodeError as exc:
            return self._err("mistral", 400, f"invalid JSON: {exc}")
        endpoint = req.get("endpoint") or ""
        if endpoint != "/v1/chat/completions":
            return self._err("mistral", 400, f"endpoint: unsupported by the mock: {endpoint!r}")
        model = req.get("model")
        if req.get("requests"):
            lines = req["requests"]
            if req.get("input_files"):
                return self._err("mistral", 400, "give input_files or requests, not both")
            if not isinstance(lines, list):
                return self._err("mistral", 400, "requests must be a list")
            ids = [r.get("custom_id") if isinstance(r, dict) else None for r in lines]
            bodies = [r.get("body") if isinstance(r, dict) else None for r in lines]
            checked = self._check_requests("mistral", ids, bodies)
            if checked:
                return checked
            input_files, size, probe = [], len(raw), raw
        else:
            input_files = req.get("input_files") or []
            if not input_files:
                return self._err("mistral", 400, "input_files or requests: one is required")
            ids, bodies, size, probe = [], [], 0, b""

            for fid in input_files:
                f = self.files.get(fid)
                if f is None or f.get("content") is None:
                    return self._err("mistral", 404, f"File {fid} not found")
                parsed = self._parse_lines("mistral", f["content"], endpoint)
                if isinstance(parsed, tuple) and len(parsed) == 3:
                    return parsed
                ids += parsed[0]
                bodies += parsed[1]
                size += len(f["content"])
                probe += f["content"]
            checked = self._check_requests("mistral", ids, bodies)
            if checked:
                return checked
        if model:
            bodies = [b if b.get("model") else {**b, "model": model} for b in bodies]
        return self._create("mistral", ids, bodies, probe, endpoint=endpoint, metadata=req.get("metadata"),
                            input_file_id=input_files, input_bytes=size, model=model)

    def _parse_lines(self, vendor, content: bytes, endpoint: str):
        """(custom_ids, bodies) from an uploaded .jsonl, or an error answer."""
        ids, bodies = [], []
        for i, line in enumerate(content.decode().splitlines(), 1):
            if not line.strip():
                continue
            try:
                item = json.loads(line)
            except json.JSONDecodeError:
                return self._err(vendor, 400, f"line {i}: not valid JSON")
            if not isinstance(item, dict) or not isinstance(item.get("body"), dict):
                return self._err(vendor, 400, f"line {i}: a JSON object with a 'body' object is required")
            if vendor == "openai" and (item.get("method") != "POST" or item.get("url") != endpoint):
                return self._err(vendor, 400, f"line {i}: method must be POST and url {endpoint!r}")
            ids.append(item.get("custom_id"))
            bodies.append(item["body"])
        return self._check_requests(vendor, ids, bodies) or (ids, bodies)

    def _check_requests(self, vendor, ids, bodies):
        if not ids:
            return self._err(vendor, 400, "the batch has no requests")
        if len(ids) > self.limits[vendor]:
            return self._err(vendor, 400, f"a batch may hold at most {self.limits[vendor]} requests, "
                                          f"this one has {len(ids)}")
        for i, (cid, body) in enumerate(zip(ids, bodies)):
            if not isinstance(cid, str) or not cid:
                return self._err(vendor, 400, f"request {i}: custom_id is required")
            if vendor == "together" and len(cid) > 64:
                return self._err(vendor, 400, f"request {i}: custom_id longer than 64 characters")
            if not isinstance(body, dict):
                return self._err(vendor, 400, f"request {i}: body must be an object")
        if len(set(ids)) != len(ids):
            dup = next(c for c, k in Counter(ids).items() if k > 1)
            return self._err(vendor, 400, f"custom_id {dup!r} is not unique within the batch")
        return None

    def _create(self, vendor, ids, bodies, probe: bytes, *, endpoint, metadata=None, input_file_id=None,
                input_bytes=0, model=None):
        if vendor == "anthropic":
            checked = self._check_requests(vendor, ids, bodies)
            if checked:
                return checked
        faults: dict[int, str] = {}
        with self.lock:
            if b"FAULT:" in probe:  # `probe`: the raw requests, to skip the per-request look when none has a marker
                for i, body in enumerate(bodies):
                    prompt = _prompt_text(body)
                    for kind, times in FAULT.findall(prompt):
                        key = (kind, hashlib.sha256(prompt.encode()).hexdigest())
                        self.seen[key] += 1
                        if not times or self.seen[key] <= int(times):
                            faults[i] = kind
                            self.faults_served[kind] += 1
                            break
        with self.batch_lock:
            mode, keep = self._next or ("completed", None)
            self._next = None
            self.batches_created += 1
            self.submitted.update(ids)
            bid = {"anthropic": f"msgbatch_{uuid.uuid4().hex[:24]}",
                   "openai": f"batch_{uuid.uuid4().hex}"}.get(vendor, str(uuid.uuid4()))
            b = Batch(id=bid, vendor=vendor, custom_ids=ids, bodies=bodies, faults=faults, seq=self.batches_created,
                      created=time.time(), started=time.monotonic(), endpoint=endpoint, model=model,
                      metadata=metadata, input_file_id=input_file_id, input_bytes=input_bytes, mode=mode,
                      keep=None if keep is None else max(0, min(keep, len(ids))),
                      error_indices=sorted(i for i, k in faults.items() if k in ERROR_FAULTS))
            self.batches[bid] = b
        upto = b.n if b.keep is None else b.keep
        threading.Thread(target=self._compute, args=(b, upto), daemon=True).start()
        return 200, {}, self._json(b)

    # ---- processing ------------------------------------------------------------------------------------------

    def _compute(self, b: Batch, upto: int) -> None:
        anthropic = b.vendor == "anthropic"
        replies = []
        try:
            for i in range(upto):
                replies.append(self._one(b.bodies[i], anthropic, b.faults.get(i)))
        finally:
            b.replies = replies
            b.computed.set()

    def _one(self, body: dict, anthropic: bool, fault: str | None):
        """(ok, status, payload): the live route's reply to this request, or the error it would be."""
        if fault == "batch_error":
            status, _, payload = self._error(500, anthropic, "mock batch error (FAULT:batch_error)")
            return False, status, payload
        try:
            status, _, payload = self._reply(body, _prompt_text(body), anthropic, fault)
        except Exception as exc:  # noqa: BLE001 - a malformed request is that request's error, as live
            status, _, payload = self._error(400, anthropic, f"invalid request: {exc!r}")
        if status == 200 and fault in ("truncated", "nonjson"):
            status, _, payload = self._error(502, anthropic, "the model's reply was not valid JSON")
        return status == 200, status, payload

    def _phase(self, b: Batch, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if b.cancel_at is not None:
            return "cancelled" if b.vendor == "together" or now - b.cancel_at >= self.cancel_s else "cancelling"
        frac = 1.0 if self.turnaround_s <= 0 else (now - b.started) / self.turnaround_s
        if frac >= 1:
            return b.mode
        return "validating" if frac < 0.1 else "finalizing" if frac >= 0.9 else "running"

    def _done(self, b: Batch, now: float) -> int:
        """Requests processed so far."""
        if b.cancel_at is not None:
            return b.cancel_done
        limit = b.n if b.keep is None else b.keep
        if self.turnaround_s <= 0:
            return limit
        frac = ((now - b.started) / self.turnaround_s - 0.1) / 0.8
        return max(0, min(limit, int(limit * frac)))

    def _cancel(self, b: Batch):
        now = time.monotonic()
        with b.lock:
            if b.cancel_at is None and self._phase(b, now) not in TERMINAL:
                b.cancel_done = self._done(b, now)
                b.cancel_at, b.cancel_wall = now, time.time()
        return 200, {}, self._json(b)

    def _finish(self, b: Batch) -> None:
        """At the end: each request's outcome, the result files and the final counts (once)."""
        with b.lock:
            if b.finished:
                return
            b.computed.wait()
            cancelled = b.cancel_at is not None
            processed = b.cancel_done if cancelled else (b.n if b.keep is None else b.keep)
            rest = "canceled" if cancelled else {"expired": "expired", "failed": "failed"}.get(b.mode)
            if b.vendor == "anthropic" and rest == "failed":
                rest = "canceled"  # Anthropic has no failed state: the batch ends, the rest canceled
            out, err = [], []
            counts = Counter()
            replies = b.replies or []
            for i, cid in enumerate(b.custom_ids):
                if i < processed:
                    ok, status, payload = replies[i]
                    kind = "succeeded" if ok else "errored"
                else:
                    ok, status, payload, kind = False, 0, None, rest
                counts[kind] += 1
                line = self._line(b, i, cid, kind, status, payload)
                if line is not None:
                    (out if ok or b.vendor == "anthropic" else err).append(line)
            b.counts = counts
            if b.vendor == "anthropic":
                b.results = ("\n".join(out) + "\n").encode() if out else b""
            else:
                with self.batch_lock:
                    if out:
                        b.output_file_id = self._new_file(b.vendor, b, "output", ("\n".join(out) + "\n").encode())
                    if err:
                        b.error_file_id = self._new_file(b.vendor, b, "error", ("\n".join(err) + "\n").encode())
            end = b.cancel_at + self.cancel_s if cancelled else b.started + self.turnaround_s
            if cancelled and b.vendor == "together":
                end = b.cancel_at
            b.ended_wall = b.created + (end - b.started)
            b.replies, b.bodies = None, []  # the files hold them now
            b.finished = True

    def _line(self, b: Batch, i: int, cid: str, kind: str, status: int, payload: str | None) -> str | None:
        cid_json = json.dumps(cid)
        if b.vendor == "anthropic":
            if kind == "succeeded":
                return f'{{"custom_id": {cid_json}, "result": {{"type": "succeeded", "message": {payload}}}}}'
            if kind == "errored":
                return f'{{"custom_id": {cid_json}, "result": {{"type": "errored", "error": {payload}}}}}'
            return json.dumps({"custom_id": cid, "result": {"type": kind}})
        if kind == "failed":
            return None  # a failed batch leaves no line for the requests it never ran
        digest = hashlib.sha256(f"{b.id}:{i}".encode()).hexdigest()
        head = f'{{"id": "batch_req_{digest[:24]}", "custom_id": {cid_json}, '
        if kind == "succeeded":
            return head + (f'"response": {{"status_code": 200, "request_id": "req_{digest[24:48]}", '
                           f'"body": {payload}}}, "error": null}}')
        if kind == "errored":
            error = "null" if b.vendor == "openai" else json.dumps({"message": _message(payload), "code": status})
            return head + (f'"response": {{"status_code": {status}, "request_id": "req_{digest[24:48]}", '
                           f'"body": {payload}}}, "error": {error}}}')
        code = {"expired": "batch_expired", "canceled": "batch_cancelled"}[kind]
        message = ("This request could not be executed before the completion window expired." if kind == "expired"
                   else "This request was not executed because the batch was cancelled.")
        return head + f'"response": null, "error": {json.dumps({"code": code, "message": message})}}}'

    def _anthropic_results(self, b: Batch):
        if self._phase(b) not in TERMINAL:
            return self._err("anthropic", 404, f"batch {b.id} has not ended; its results are not available yet",
                             "not_found_error")
        self._finish(b)
        return self._send_file(b.results or b"", "application/binary")

    def _anthropic_delete(self, b: Batch):
        if self._phase(b) not in TERMINAL:
            return self._err("anthropic", 400, f"batch {b.id} is still in progress; cancel it first")
        with self.batch_lock:
            self.batches.pop(b.id, None)
        return 200, {}, json.dumps({"id": b.id, "type": "message_batch_deleted"})

    # ---- rendering a batch -----------------------------------------------------------------------------------

    def _json(self, b: Batch, inline: bool = False) -> str:
        return json.dumps(self._render(b, inline))

    def _render(self, b: Batch, inline: bool = False) -> dict:
        now = time.monotonic()
        phase = self._phase(b, now)
        ended = phase in TERMINAL
        if ended:
            self._finish(b)
        done = b.n if ended else self._done(b, now)
        errored = bisect.bisect_left(b.error_indices, done)
        status = STATUS[b.vendor][phase]
        b.status = status
        c = b.counts
        at = b.created + (self.turnaround_s * 0.1)  # in progress from
        if b.vendor == "anthropic":
            # Documented: only `processing` is nonzero until the whole batch has ended.
            counts = ({"processing": 0, "succeeded": c["succeeded"], "errored": c["errored"],
                       "canceled": c["canceled"], "expired": c["expired"]} if ended else
                      {"processing": b.n, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0})
            return {"id": b.id, "type": "message_batch", "processing_status": status, "request_counts": counts,
                    "created_at": _iso(b.created), "expires_at": _iso(b.created + 86400),
                    "ended_at": _iso(b.ended_wall) if ended else None, "archived_at": None,
                    "cancel_initiated_at": _iso(b.cancel_wall) if b.cancel_wall else None,
                    "results_url": f"{self.url}/v1/messages/batches/{b.id}/results" if ended else None}
        if b.vendor == "openai":
            counts = ({"total": b.n, "completed": c["succeeded"], "failed": c["errored"] + c["expired"] + c["canceled"]}
                      if ended else {"total": b.n, "completed": done - errored, "failed": errored})
            end = int(b.ended_wall) if ended else None
            return {"id": b.id, "object": "batch", "endpoint": b.endpoint, "model": b.model,
                    "errors": ({"object": "list", "data": [{"code": "batch_failed", "line": None, "param": None,
                                                            "message": f"mock failure: {c['succeeded'] + c['errored']}"
                                                                       f" of {b.n} requests have results"}]}
                               if phase == "failed" else None),
                    "input_file_id": b.input_file_id, "completion_window": "24h", "status": status,
                    "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
                    "created_at": int(b.created), "in_progress_at": int(at) if phase != "validating" else None,
                    "expires_at": int(b.created + 86400),
                    "finalizing_at": int(b.created + self.turnaround_s * 0.9) if phase in ("finalizing", "completed")
                    else None,
                    "completed_at": end if phase == "completed" else None,
                    "failed_at": end if phase == "failed" else None,
                    "expired_at": end if phase == "expired" else None,
                    "cancelling_at": int(b.cancel_wall) if b.cancel_wall else None,
                    "cancelled_at": end if phase == "cancelled" else None,
                    "request_counts": counts, "metadata": b.metadata}
        if b.vendor == "together":
            return {"id": b.id, "user_id": "mock-user", "input_file_id": b.input_file_id,
                    "file_size_bytes": b.input_bytes, "status": status, "job_deadline": _iso(b.created + 86400),
                    "created_at": _iso(b.created), "endpoint": b.endpoint, "model_id": b.model,
                    "progress": 100.0 if phase == "completed" else round(100.0 * done / b.n, 2),
                    "output_file_id": b.output_file_id, "error_file_id": b.error_file_id,
                    "error": ("mock failure (fail_next)" if phase == "failed" else
                              "the batch expired" if phase == "expired" else None),
                    "completed_at": _iso(b.ended_wall) if ended else None, "metadata": b.metadata}
        # mistral
        if ended:
            completed, succeeded, failed = c["succeeded"] + c["errored"], c["succeeded"], c["errored"]
        else:
            completed, succeeded, failed = done, done - errored, errored
        outputs = None
        if inline and ended:
            outputs = [json.loads(line) for fid in (b.output_file_id, b.error_file_id) if fid
                       for line in self.files[fid]["content"].decode().splitlines()]
        return {"id": b.id, "object": "batch", "input_files": b.input_file_id or [], "metadata": b.metadata,
                "endpoint": b.endpoint, "model": b.model, "agent_id": None, "output_file": b.output_file_id,
                "error_file": b.error_file_id,
                "errors": [{"message": "mock failure (fail_next)", "count": 1}] if phase == "failed" else [],
                "outputs": outputs, "status": status, "created_at": int(b.created), "total_requests": b.n,
                "completed_requests": completed, "succeeded_requests": succeeded, "failed_requests": failed,
                "started_at": int(at) if phase != "validating" else None,
                "completed_at": int(b.ended_wall) if ended else None}

    # ---- lists -----------------------------------------------------------------------------------------------

    def _newest_first(self, vendor: str) -> list[Batch]:
        with self.batch_lock:
            return sorted((b for b in self.batches.values() if b.vendor == vendor), key=lambda b: -b.seq)

    def _list_anthropic(self, q):
        items = self._newest_first("anthropic")
        limit = max(1, min(1000, int((q.get("limit") or ["20"])[0])))
        ids = [b.id for b in items]
        if q.get("before_id"):
            end = ids.index(q["before_id"][0]) if q["before_id"][0] in ids else 0
            page, more = items[max(0, end - limit):end], end - limit > 0
        else:
            start = ids.index(q["after_id"][0]) + 1 if q.get("after_id") and q["after_id"][0] in ids else 0
            page, more = items[start:start + limit], start + limit < len(items)
        data = [self._render(b) for b in page]
        return 200, {}, json.dumps({"data": data, "has_more": more, "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None})

    def _list_openai(self, q):
        items = self._newest_first("openai")
        limit = max(1, min(100, int((q.get("limit") or ["20"])[0])))
        ids = [b.id for b in items]
        start = ids.index(q["after"][0]) + 1 if q.get("after") and q["after"][0] in ids else 0
        page = items[start:start + limit]
        data = [self._render(b) for b in page]
        return 200, {}, json.dumps({"object": "list", "data": data, "has_more": start + limit < len(items),
                                    "first_id": data[0]["id"] if data else None,
                                    "last_id": data[-1]["id"] if data else None})

    def _list_together(self):
        return 200, {}, json.dumps([self._render(b) for b in self._newest_first("together")])

    def _list_mistral(self, q):
        known = {"page", "page_size", "model", "agent_id", "metadata", "created_after", "created_by_me", "status",
                 "order_by", "inline"}
        wanted = {k: v[0] for k, v in q.items() if k not in known}  # the SDK sends metadata as top-level keys
        if q.get("metadata"):
            try:
                wanted.update(json.loads(q["metadata"][0]))
            except (json.JSONDecodeError, TypeError):
                pass
        items = self._newest_first("mistral")
        if (q.get("order_by") or ["-created"])[0] == "created":
            items.reverse()
        if q.get("model"):
            items = [b for b in items if b.model == q["model"][0]]
        if q.get("created_after"):
            after = datetime.fromisoformat(q["created_after"][0].replace("Z", "+00:00")).timestamp()
            items = [b for b in items if b.created > after]
        items = [b for b in items if all(str((b.metadata or {}).get(k)) == str(v) for k, v in wanted.items())]
        rendered = [self._render(b) for b in items]
        if q.get("status"):
            rendered = [r for r in rendered if r["status"] in q["status"]]
        page, size = int((q.get("page") or ["0"])[0]), int((q.get("page_size") or ["100"])[0])
        return 200, {}, json.dumps({"object": "list", "data": rendered[page * size:(page + 1) * size],
                                    "total": len(rendered)})

    # ---- errors ----------------------------------------------------------------------------------------------

    def _vendor_of(self, ua: str) -> str:
        return "together" if "together" in ua else "mistral" if "mistral" in ua else "openai"

    @staticmethod
    def _err(vendor: str, status: int, message: str, kind: str = "invalid_request_error"):
        if vendor == "anthropic":
            body = {"type": "error", "error": {"type": kind, "message": message}}
        elif vendor == "mistral":
            body = {"object": "error", "message": message, "type": kind, "param": None, "code": None}
        else:
            body = {"error": {"message": message, "type": kind, "param": None, "code": None}}
        return status, {}, json.dumps(body)


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat().replace("+00:00", "Z")


def _message(payload: str) -> str:
    try:
        body = json.loads(payload)
        return (body.get("error") or {}).get("message") or payload
    except (json.JSONDecodeError, AttributeError):
        return payload


def _text(value) -> str | None:
    if value is None:
        return None
    return (value[1] if isinstance(value, tuple) else value).decode(errors="replace")


def _file_object(f: dict) -> dict:
    """A file as OpenAI (FileObject), Mistral (CreateFileResponse) and Together (FileResponse) read it."""
    content = f.get("content") or b""
    return {"id": f["id"], "object": "file", "bytes": len(content), "created_at": f["created_at"],
            "filename": f["filename"], "purpose": f.get("purpose") or "batch", "status": "processed",
            "sample_type": {"input": "batch_request", "output": "batch_result", "error": "batch_error"}[f["kind"]],
            "source": "upload" if f["kind"] == "input" else "mistral", "num_lines": content.count(b"\n") + (not content.endswith(b"\n") and bool(content)),
            "mimetype": "application/jsonl", "FileType": "jsonl", "processing_status": "COMPLETED"}


def _multipart(content_type: str, raw: bytes) -> dict:
    """name -> bytes, or (filename, bytes) for a file part."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    if not match:
        return {}
    fields: dict = {}
    for part in raw.split(b"--" + match.group(1).encode())[1:]:
        if part.startswith(b"--"):
            break
        head, _, body = part.partition(b"\r\n\r\n")
        if body.endswith(b"\r\n"):
            body = body[:-2]
        disposition = next((line for line in head.decode(errors="replace").split("\r\n")
                            if line.lower().startswith("content-disposition")), "")
        name = re.search(r'\bname="([^"]*)"', disposition)
        filename = re.search(r'\bfilename="([^"]*)"', disposition)
        if name:
            fields[name.group(1)] = (filename.group(1), body) if filename else body
    return fields
