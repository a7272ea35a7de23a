"""The batch APIs whose input and results are files: OpenAI (and OpenAI-compatible servers that implement
its Batch API), Together and Mistral. Each uploads a JSONL file of requests, creates a batch on it, and
returns an output file (and an error file) of OpenAI-style lines, matched to requests by custom_id.

The uploaded file is named after the batch's tag (`<stage>-<hash of its requests>.jsonl`), so a batch
is recognisable at the vendor even where a batch takes no metadata (Together): `find` matches it by its
input file's name.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path

from distillery.providers.base import classify
from distillery.providers.batching import TAG_KEY, BatchAPI, RemoteStatus, file_batch_result, jsonl

ENDPOINT = "/v1/chat/completions"
MAX_LISTED = 2000  # batches looked through when reconciling


class OpenAIBatches(BatchAPI):
    vendor, max_requests, max_bytes = "openai", 50_000, 200 * 2**20
    ENDED = {"completed", "failed", "expired", "cancelled"}

    def line(self, custom_id, params):
        return {"custom_id": custom_id, "method": "POST", "url": ENDPOINT, "body": params}

    def create(self, lines, tag):
        try:
            f = self.client.files.create(file=(f"{tag[TAG_KEY]}.jsonl", jsonl(lines), "application/jsonl"),
                                         purpose="batch")
            return self.client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h",
                                              metadata=tag).id
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.provider.name) from exc

    def find(self, tag, since, n, known):
        seen = set()
        for b in self.client.batches.list(limit=100):  # newest first; the SDK pages on
            if b.created_at < since or b.id in seen or len(seen) >= MAX_LISTED:  # a server that ignores `after`
                return None
            seen.add(b.id)
            if (b.metadata or {}).get(TAG_KEY) == tag[TAG_KEY] and b.id not in known:
                return b.id
        return None

    def status(self, batch_id):
        b = self.client.batches.retrieve(batch_id)
        rc = b.request_counts
        done, failed, total = (rc.completed, rc.failed, rc.total) if rc else (0, 0, 0)
        errors = "; ".join(f"{e.code}: {e.message}" for e in (b.errors.data or [])) if b.errors else None
        return RemoteStatus(b.status, b.status in self.ENDED, {"succeeded": done, "errored": failed,
                                                               "processing": max(0, total - done - failed)},
                            total, error=errors or None)

    def _files(self, batch_id) -> list[str]:
        b = self.client.batches.retrieve(batch_id)
        return [f for f in (b.output_file_id, b.error_file_id) if f]

    def _read(self, file_id) -> bytes:
        return self.client.files.content(file_id).content

    def results(self, batch_id):
        for file_id in self._files(batch_id):
            for raw in self._read(file_id).splitlines():
                if raw.strip():
                    yield file_batch_result(json.loads(raw), self.provider.read_body)

    def cancel(self, batch_id):
        self.client.batches.cancel(batch_id)

    def recent(self, limit=100):
        out = []
        for b in self.client.batches.list(limit=limit):
            out.append({"id": b.id, "state": b.status, "created": b.created_at, "tag": dict(b.metadata or {}),
                        "counts": dict(b.request_counts) if b.request_counts else {}})
            if len(out) >= limit:
                break
        return out


class TogetherBatches(OpenAIBatches):
    """Together's Batch API (SDK 3.x): the upload is a file on disk (a presigned PUT), `create` returns the
    job under `.job`, states are upper case, progress is a percentage (no counts), and a batch takes no
    metadata: it is found again by its input file's name."""
    vendor, max_requests, max_bytes = "together", 50_000, 100 * 2**20
    ENDED = {"COMPLETED", "FAILED", "EXPIRED", "CANCELLED"}

    def line(self, custom_id, params):
        return {"custom_id": custom_id, "body": params}

    def create(self, lines, tag):
        try:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp) / f"{tag[TAG_KEY]}.jsonl"
                path.write_bytes(jsonl(lines))
                f = self.client.files.upload(file=path, purpose="batch-api", check=False)
            return self.client.batches.create(input_file_id=f.id, endpoint=ENDPOINT, completion_window="24h").job.id
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.provider.name) from exc

    def find(self, tag, since, n, known):
        for b in self.client.batches.list():
            created = b.created_at.timestamp() if b.created_at is not None else None
            if created is None or created < since or b.id in known or not b.input_file_id:
                continue
            try:
                name = getattr(self.client.files.retrieve(b.input_file_id), "filename", "")
            except Exception:  # noqa: BLE001 - a file gone from the vendor: not ours to adopt
                continue
            if name == f"{tag[TAG_KEY]}.jsonl":
                return b.id
        return None

    def status(self, batch_id):
        b = self.client.batches.retrieve(batch_id)
        return RemoteStatus(f"{b.status} {b.progress or 0:.0f}%", b.status in self.ENDED, {}, 0, error=b.error or None)

    def _read(self, file_id):
        return self.client.files.content(file_id).read()

    def recent(self, limit=100):
        return [{"id": b.id, "state": b.status, "created": b.created_at.timestamp() if b.created_at else None,
                 "counts": {"progress_pct": b.progress}, "tag": {}} for b in self.client.batches.list()[:limit]]


class MistralBatches(OpenAIBatches):
    """Mistral's batch jobs (SDK 3.x, `mistralai.client`): the model is named on the job, not per line;
    output and error files are `output_file` / `error_file`; metadata is kept and listed."""
    vendor, max_requests, max_bytes = "mistral", 1_000_000, 512 * 2**20
    ENDED = {"SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED"}

    def line(self, custom_id, params):
        return {"custom_id": custom_id, "body": params}

    def create(self, lines, tag):
        try:
            f = self.client.files.upload(file={"file_name": f"{tag[TAG_KEY]}.jsonl", "content": jsonl(lines)},
                                         purpose="batch")
            return self.client.batch.jobs.create(endpoint=ENDPOINT, input_files=[f.id], model=self.provider.model,
                                                 metadata=tag, timeout_hours=24).id
        except Exception as exc:  # noqa: BLE001
            raise classify(exc, self.provider.name) from exc

    def _jobs(self, limit=100, **filters):
        return self.client.batch.jobs.list(page=0, page_size=limit, order_by="-created", **filters).data or []

    def find(self, tag, since, n, known):
        for j in self._jobs(metadata=tag):
            if (j.metadata or {}).get(TAG_KEY) == tag[TAG_KEY] and j.created_at >= since and j.id not in known:
                return j.id
        return None

    def status(self, batch_id):
        j = self.client.batch.jobs.get(job_id=batch_id)
        counts = {"succeeded": j.succeeded_requests, "errored": j.failed_requests,
                  "processing": max(0, j.total_requests - j.completed_requests)}
        errors = "; ".join(e.message for e in j.errors or []) or None
        return RemoteStatus(j.status, j.status in self.ENDED, counts, j.total_requests, error=errors)

    def _files(self, batch_id):
        j = self.client.batch.jobs.get(job_id=batch_id)
        return [f for f in (j.output_file, j.error_file) if f]

    def _read(self, file_id):
        return self.client.files.download(file_id=file_id).read()

    def cancel(self, batch_id):
        self.client.batch.jobs.cancel(job_id=batch_id)

    def recent(self, limit=100):
        return [{"id": j.id, "state": j.status, "created": j.created_at, "tag": dict(j.metadata or {}),
                 "counts": {"succeeded": j.succeeded_requests, "errored": j.failed_requests,
                            "total": j.total_requests}} for j in self._jobs(limit)]
