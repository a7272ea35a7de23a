"""MockBatchAPI plus the fine-tuning APIs of OpenAI (and OpenAI-compatible services) and Together.

The real, pinned SDKs are pointed at it, as at MockBatchAPI (its batch and live routes keep working on the port):

    with MockFineTuneAPI(job_s=0.5) as api:
        openai.OpenAI(api_key="sk-test", base_url=api.url + "/v1", max_retries=0)
        together.Together(api_key="sk-test", base_url=api.url, max_retries=0)   # together 3.x paths carry /v1

Routes. OpenAI: /v1/files (multipart upload, purpose "fine-tune"), POST /v1/fine_tuning/jobs, GET
/v1/fine_tuning/jobs (cursor pages: `after`, `limit`, `metadata[k]=v` filter), GET /v1/fine_tuning/jobs/{id},
GET /v1/fine_tuning/jobs/{id}/events (newest first, cursor pages), POST /v1/fine_tuning/jobs/{id}/cancel.
Together: its three-step upload (purpose "fine-tune"), GET /v1/fine-tunes/models/limits, POST
/v1/fine-tunes/estimate-price, POST /v1/fine-tunes, GET /v1/fine-tunes, GET|DELETE /v1/fine-tunes/{id}, POST
/v1/fine-tunes/{id}/cancel, GET /v1/fine-tunes/{id}/events, GET /v1/fine-tunes/{id}/metrics.

A job lives `job_s` seconds from creation: validating (OpenAI `validating_files`, Together `pending`) for the
first tenth, queued for the next, running until 0.9 (one training step at a time; OpenAI metrics events carry
`data={"step", "total_steps", "train_loss", ...}`, Together epoch events carry `step`/`total_steps` and its
metrics route the per-step `train/loss`; the loss falls with every step), then finishing (Together
`uploading`) and at `job_s` succeeded / completed, with a fine-tuned model name (OpenAI
`ft:<base>:<org>:<suffix>:<id8>`, Together `<account>/<base name>-<suffix>-<id8>`), trained tokens =
characters of the training file // 4 x n_epochs, and (Together) `total_price` in nano-dollars at
`TOGETHER_USD_PER_MTOK` (the estimate route gives the same in USD). OpenAI reports no cost.

What the vendors check at create is checked at create (400): the training / validation file exists for that
vendor, was uploaded with purpose "fine-tune" and is complete; the base model is in `ft_models` (None: any
model); hyperparameters are in range (Together: against its model limits); unknown OpenAI arguments. What they
check after create fails the job at the end of validation: OpenAI a file that is not chat JSONL with at least 10
examples (roles system/user/assistant/tool, an assistant turn each; error code `invalid_training_file`), Together
lines that are not objects in one of its formats (status `user_error`).

Serving: a chat completion (POST /v1/chat/completions, the live route) for the model name a succeeded job
produced is answered as the base route answers, with the reply seeded by the model name too, so it differs from
the base model's; a job's model name before the job succeeded, an `ft:` name no job produced, and (with
`ft_models` set) any other name that is not a known base are answered 404 model_not_found. Other requests are
answered exactly as by MockAPI.

Faults: `fail_next_job(message, code)` (the next job fails halfway through training with that message: OpenAI
status `failed` with `error` {code, message}, Together status `error` with a `job_error` event), the cancel routes
(OpenAI: `cancelled` at once; Together: `cancel_requested`, then `cancelled` after job_s / 10; a finished job:
400), `cut_next_upload()` (the next fine-tune upload's final answer - OpenAI's POST /v1/files, Together's
preprocess step - is torn: full content-length, half the bytes, hang-up; the file is not kept), and MockAPI's
stop()/start()/restart() with all state kept. Counters: `ft_uploads`, `training_files` (file id -> bytes, the
fine-tune uploads), `jobs_created`, `jobs` (id -> FineTuneJob), `job_status(id)` (the vendor's status now).
"""
from __future__ import annotations

import json
import math
import threading
import time
import uuid
from dataclasses import dataclass, field

from distillery.testing.mock_api import CUT_HEADER, MockAPI
from distillery.testing.mock_batches import MockBatchAPI, _file_object, _iso

TOGETHER_USD_PER_MTOK = 0.48  # the mock's training price (Together's LoRA SFT rate for models up to 16B)
NANODOLLAR = 1_000_000_000
OPENAI_MIN_EXAMPLES = 10
OPENAI_ROLES = {"system", "developer", "user", "assistant", "tool", "function"}
TOGETHER_ROLES = {"system", "user", "assistant", "tool"}
OPENAI_CREATE_KEYS = {"model", "training_file", "hyperparameters", "integrations", "metadata", "method", "seed",
                      "suffix", "validation_file"}
HYPERPARAMETERS = {"n_epochs", "batch_size", "learning_rate_multiplier"}
DPO_HYPERPARAMETERS = HYPERPARAMETERS | {"beta"}

# Vendor status names for the mock's phases.
FT_STATUS = {
    "openai": {"validating": "validating_files", "queued": "queued", "running": "running", "finishing": "running",
               "succeeded": "succeeded", "failed": "failed", "invalid": "failed", "cancelling": "cancelled",
               "cancelled": "cancelled"},
    "together": {"validating": "pending", "queued": "queued", "running": "running", "finishing": "uploading",
                 "succeeded": "completed", "failed": "error", "invalid": "user_error",
                 "cancelling": "cancel_requested", "cancelled": "cancelled"},
}
FT_TERMINAL = ("succeeded", "failed", "invalid", "cancelled")

# The limits the mock's Together models report (GET /v1/fine-tunes/models/limits).
TOGETHER_LIMITS = {
    "default_gradient_accumulation_steps": 1,
    "lora_training": {"default_rank": 8, "max_rank": 64, "min_batch_size": 8, "max_batch_size": 32,
                      "max_batch_size_dpo": 16, "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj",
                                                                    "up_proj", "down_proj", "gate_proj"]},
    "full_training": {"min_batch_size": 8, "max_batch_size": 32, "max_batch_size_dpo": 16},
    "max_learning_rate": 1.0, "min_learning_rate": 1e-8, "max_num_checkpoints": 10, "max_num_epochs": 20,
    "max_num_evals": 100, "max_seq_length_sft": 8192, "max_seq_length_dpo": 8192, "min_max_seq_length": 512,
    "merge_output_lora": True, "supports_full_training": True, "supports_reasoning": False, "supports_tools": True,
    "supports_vision": False,
}


@dataclass
class FineTuneJob:
    """One fine-tuning job, as the server keeps it (`api.jobs[id]`)."""
    id: str
    vendor: str  # openai | together
    model: str
    training_file: str
    validation_file: str | None
    suffix: str | None
    n_epochs: int
    batch_size: int
    learning_rate: float  # OpenAI: the multiplier
    request: dict  # the create body as sent
    seq: int
    created: float  # wall clock
    started: float  # monotonic
    job_s: float
    examples: int
    chars: int
    output_model: str
    mode: str = "succeeded"  # how it ends untouched: succeeded | failed | invalid
    error: str | None = None  # failed / invalid: the message
    error_code: str | None = None
    metadata: dict | None = None
    seed: int = 0
    cancel_at: float | None = None  # monotonic
    cancel_s: float = 0.0
    result_file_id: str | None = None
    deleted: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def steps_per_epoch(self) -> int:
        return max(1, math.ceil(self.examples / max(1, self.batch_size)))

    @property
    def total_steps(self) -> int:
        return self.steps_per_epoch * self.n_epochs

    @property
    def trained_tokens(self) -> int:
        return self.chars // 4 * self.n_epochs

    def end_offset(self) -> float:
        return self.job_s * {"succeeded": 1.0, "failed": 0.5, "invalid": 0.1}[self.mode]

    def step_offset(self, step: int) -> float:
        return self.job_s * (0.2 + 0.7 * step / self.total_steps)

    def loss(self, step: int) -> float:
        return round(0.25 + 2.0 * math.exp(-3.0 * step / self.total_steps), 4)

    def accuracy(self, step: int) -> float:
        return round(0.95 - 0.6 * math.exp(-3.0 * step / self.total_steps), 4)


class MockFineTuneAPI(MockBatchAPI):
    def __init__(self, *, job_s: float = 1.0, ft_models: set[str] | None = None, account: str = "mock-account",
                 organization: str = "mock-org", **kwargs):
        """`job_s`: a job's life from creation to its end; `ft_models`: the base models open to fine-tuning (and
        served) - None allows any; `account` / `organization`: in Together / OpenAI fine-tuned model names."""
        super().__init__(**kwargs)
        self.job_s, self.ft_models, self.account, self.organization = job_s, ft_models, account, organization
        self.ft_uploads = 0
        self.jobs_created = 0
        self.jobs: dict[str, FineTuneJob] = {}
        self.training_files: dict[str, bytes] = {}
        self.ft_names: dict[str, str] = {}  # fine-tuned model name -> job id
        self._fail_next: tuple[str, str] | None = None
        self._cut_upload = False

    # ---- test controls -------------------------------------------------------------------------------------

    def fail_next_job(self, message: str = "mock failure: the fine-tuning job failed",
                      code: str = "internal_error") -> None:
        """The next created job fails halfway through training with this message (OpenAI `error`, Together a
        job_error event)."""
        self._fail_next = (message, code)

    def cut_next_upload(self) -> None:
        """The next fine-tune upload's final answer is torn (the SDK raises); the file is not kept."""
        self._cut_upload = True

    def job_status(self, job_id: str) -> str:
        job = self.jobs[job_id]
        return FT_STATUS[job.vendor][self._ft_phase(job)]

    # ---- routing ---------------------------------------------------------------------------------------------

    def _route(self, method, parts, q, headers, raw):
        if parts[:1] == ["v1"]:
            p = parts[1:]
            if p[:2] == ["fine_tuning", "jobs"]:
                return self._openai_route(method, p[2:], q, raw)
            if p[:1] == ["fine-tunes"]:
                return self._together_route(method, p[1:], q, raw)
            if len(p) == 3 and p[0] == "files" and p[2] == "preprocess" and method == "POST":
                answer = self._together_preprocess(p[1])
                if answer is not None:
                    return answer
        return super()._route(method, parts, q, headers, raw)

    # ---- uploads ---------------------------------------------------------------------------------------------

    def _upload(self, headers, raw, ua):
        answer = super()._upload(headers, raw, ua)
        if answer[0] != 200:  # Together's first step (302) or an error
            return answer
        fid = json.loads(answer[2])["id"]
        with self.batch_lock:
            f = self.files.get(fid)
            if f is None or f.get("purpose") != "fine-tune":
                return answer
            if self._cut_upload:
                self._cut_upload = False
                self.files.pop(fid, None)
                self.uploads -= 1
                return 200, {CUT_HEADER: "1"}, answer[2]
            self.ft_uploads += 1
            self.training_files[fid] = f["content"]
        return answer

    def _together_preprocess(self, fid):
        """Together's third upload step, for fine-tune files: counted here, or torn by cut_next_upload()."""
        with self.batch_lock:
            f = self.files.get(fid)
            if f is None or f.get("purpose") != "fine-tune" or f.get("content") is None:
                return None
            if self._cut_upload:
                self._cut_upload = False
                self.files.pop(fid, None)
                self.uploads -= 1
                return 200, {CUT_HEADER: "1"}, json.dumps(_file_object(f))
            if fid not in self.training_files:
                self.ft_uploads += 1
                self.training_files[fid] = f["content"]
        return None

    # ---- OpenAI ----------------------------------------------------------------------------------------------

    def _openai_route(self, method, rest, q, raw):
        if not rest:
            if method == "POST":
                return self._openai_create(raw)
            if method == "GET":
                return self._openai_list(q)
            return None
        job = self.jobs.get(rest[0])
        if job is None or job.vendor != "openai" or job.deleted:
            return self._ft_err("openai", 404, f"No fine-tuning job found with id '{rest[0]}'.", "not_found")
        if len(rest) == 1 and method == "GET":
            return 200, {}, json.dumps(self._render_openai(job))
        if rest[1:] == ["cancel"] and method == "POST":
            return self._cancel_job(job)
        if rest[1:] == ["events"] and method == "GET":
            return self._openai_events(job, q)
        return None

    def _openai_create(self, raw):
        try:
            req = json.loads(raw.decode() or "{}")
        except json.JSONDecodeError as exc:
            return self._ft_err("openai", 400, f"invalid JSON: {exc}")
        unknown = sorted(set(req) - OPENAI_CREATE_KEYS)
        if unknown:
            return self._ft_err("openai", 400, f"Unrecognized request argument supplied: {unknown[0]}",
                                param=unknown[0])
        model = req.get("model")
        if not isinstance(model, str) or not model:
            return self._ft_err("openai", 400, "model: a string is required", param="model")
        if self.ft_models is not None and model not in self.ft_models:
            return self._ft_err("openai", 400, f"Model {model} is not available for fine-tuning or does not exist.",
                                "model_not_available", "model")
        checked = self._check_file("openai", req.get("training_file"), "training_file")
        if isinstance(checked, tuple):
            return checked
        training = checked
        if req.get("validation_file"):
            bad = self._check_file("openai", req["validation_file"], "validation_file")
            if isinstance(bad, tuple):
                return bad
        suffix = req.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 64):
            return self._ft_err("openai", 400, "suffix: at most 64 characters", param="suffix")
        method = req.get("method") or {"type": "supervised"}
        kind = method.get("type") if isinstance(method, dict) else None
        if kind not in ("supervised", "dpo", "reinforcement"):
            return self._ft_err("openai", 400, "method.type must be one of 'supervised', 'dpo', 'reinforcement'",
                                param="method.type")
        hyper = dict(req.get("hyperparameters") or {})
        hyper.update(((method.get(kind) or {}).get("hyperparameters")) or {})
        allowed = DPO_HYPERPARAMETERS if kind == "dpo" else HYPERPARAMETERS
        extra = sorted(set(hyper) - allowed - ({"reasoning_effort", "compute_multiplier", "eval_interval",
                                                "eval_samples"} if kind == "reinforcement" else set()))
        if extra:
            return self._ft_err("openai", 400, f"hyperparameters.{extra[0]}: Extra inputs are not permitted",
                                param=f"hyperparameters.{extra[0]}")
        checks = {"n_epochs": (int, 1, 50), "batch_size": (int, 1, 256), "learning_rate_multiplier": (float, 0, 10)}
        for key, (typ, lo, hi) in checks.items():
            value = hyper.get(key, "auto")
            if value == "auto":
                continue
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and (
                typ is float or float(value).is_integer())
            if not ok or not (lo < value <= hi if typ is float else lo <= value <= hi):
                return self._ft_err("openai", 400, f"hyperparameters.{key}: invalid value {value!r}",
                                    param=f"hyperparameters.{key}")
        examples, problem = _openai_file_problem(training["content"], kind)
        n_epochs = 3 if hyper.get("n_epochs", "auto") == "auto" else int(hyper["n_epochs"])
        batch = int(hyper["batch_size"]) if hyper.get("batch_size", "auto") != "auto" else max(1, examples // 50)
        lr = hyper.get("learning_rate_multiplier", "auto")
        lr = 1.8 if lr == "auto" else float(lr)
        jid = f"ftjob-{uuid.uuid4().hex[:24]}"
        name = f"ft:{model}:{self.organization}:{suffix or ''}:{jid[6:14]}"
        job = self._new_job("openai", jid, model, training, req, n_epochs, batch, lr, examples, problem,
                            suffix=suffix, validation=req.get("validation_file") or None, name=name,
                            metadata=req.get("metadata"), seed=req.get("seed"))
        job.request["method"] = {"type": kind, kind: {"hyperparameters": {**hyper, "n_epochs": n_epochs,
                                                                          "batch_size": batch,
                                                                          "learning_rate_multiplier": lr}}}
        return 200, {}, json.dumps(self._render_openai(job))

    def _render_openai(self, job: FineTuneJob) -> dict:
        now = time.monotonic()
        phase = self._ft_phase(job, now)
        end_wall = self._end_wall(job, phase)
        succeeded = phase == "succeeded"
        if succeeded:
            self._result_file(job)
        hyper = {"n_epochs": job.n_epochs, "batch_size": job.batch_size, "learning_rate_multiplier": job.learning_rate}
        error = ({"code": job.error_code, "message": job.error, "param": "training_file" if job.mode == "invalid"
                  else None} if phase in ("failed", "invalid") else None)
        return {"id": job.id, "object": "fine_tuning.job", "created_at": int(job.created), "error": error,
                "fine_tuned_model": job.output_model if succeeded else None,
                "finished_at": int(end_wall) if end_wall else None, "hyperparameters": hyper, "model": job.model,
                "organization_id": self.organization, "result_files": [job.result_file_id] if succeeded else [],
                "seed": job.seed, "status": FT_STATUS["openai"][phase],
                "trained_tokens": job.trained_tokens if succeeded else None, "training_file": job.training_file,
                "validation_file": job.validation_file,
                "estimated_finish": int(job.created + job.job_s) + 1 if phase in ("running", "finishing") else None,
                "integrations": job.request.get("integrations") or [], "metadata": job.metadata,
                "method": job.request.get("method"), "user_provided_suffix": job.suffix}

    def _openai_list(self, q):
        items = self._ft_newest_first("openai")
        wanted = {k[len("metadata["):-1]: v[0] for k, v in q.items() if k.startswith("metadata[") and k.endswith("]")}
        if (q.get("metadata") or [""])[0] == "null":
            items = [j for j in items if not j.metadata]
        if wanted:
            items = [j for j in items if all((j.metadata or {}).get(k) == v for k, v in wanted.items())]
        limit = max(1, min(100, int((q.get("limit") or ["20"])[0])))
        ids = [j.id for j in items]
        start = ids.index(q["after"][0]) + 1 if q.get("after") and q["after"][0] in ids else 0
        data = [self._render_openai(j) for j in items[start:start + limit]]
        return 200, {}, json.dumps({"object": "list", "data": data, "has_more": start + limit < len(items)})

    def _openai_events(self, job: FineTuneJob, q):
        events = []
        for i, (offset, kind, info) in enumerate(self._timeline(job)):
            eid = f"ftevent-{uuid.uuid5(uuid.NAMESPACE_URL, f'{job.id}/{i}').hex[:24]}"
            level, typ, data = "info", "message", None
            if kind == "created":
                message = f"Created fine-tuning job: {job.id}"
            elif kind == "validating":
                message = f"Validating training file: {job.training_file}"
            elif kind == "validated":
                message = "Files validated, moving job to queued state"
            elif kind == "started":
                message = "Fine-tuning job started"
            elif kind == "step":
                step = info["step"]
                message = f"Step {step}/{job.total_steps}: training loss={info['loss']:.2f}"
                typ = "metrics"
                data = {"step": step, "total_steps": job.total_steps, "train_loss": info["loss"],
                        "train_mean_token_accuracy": info["accuracy"]}
            elif kind == "checkpoint":
                message = f"Checkpoint created at step {info['step']}"
            elif kind == "model":
                message = f"New fine-tuned model created: {job.output_model}"
            elif kind == "succeeded":
                message = "The job has successfully completed"
            elif kind in ("failed", "invalid"):
                level, message = "error", job.error
            elif kind == "cancelled":
                message = "Fine-tuning job cancelled"
            else:
                continue
            events.append({"id": eid, "object": "fine_tuning.job.event", "created_at": int(job.created + offset),
                           "level": level, "message": message, "data": data, "type": typ})
        events.reverse()  # newest first
        ids = [e["id"] for e in events]
        start = ids.index(q["after"][0]) + 1 if q.get("after") and q["after"][0] in ids else 0
        limit = max(1, min(1000, int((q.get("limit") or ["20"])[0])))
        page = events[start:start + limit]
        return 200, {}, json.dumps({"object": "list", "data": page, "has_more": start + limit < len(events)})

    # ---- Together --------------------------------------------------------------------------------------------

    def _together_route(self, method, rest, q, raw):
        if not rest:
            if method == "POST":
                return self._together_create(raw)
            if method == "GET":
                return 200, {}, json.dumps({"data": [self._render_together(j, truncated=True)
                                                     for j in self._ft_newest_first("together")]})
            return None
        if rest == ["models", "limits"] and method == "GET":
            model = (q.get("model_name") or [""])[0]
            if not self._ft_model_allowed(model):
                return self._ft_err("together", 400, f"The model {model!r} is not available for fine-tuning",
                                    param="model_name")
            return 200, {}, json.dumps({"model_name": model, **TOGETHER_LIMITS})
        if rest == ["estimate-price"] and method == "POST":
            return self._together_estimate(raw)
        job = self.jobs.get(rest[0])
        if job is None or job.vendor != "together" or job.deleted:
            return self._ft_err("together", 404, f"Fine-tune job {rest[0]} not found", "not_found")
        if len(rest) == 1 and method == "GET":
            return 200, {}, json.dumps(self._render_together(job))
        if len(rest) == 1 and method == "DELETE":
            if self._ft_phase(job) not in FT_TERMINAL:
                return self._ft_err("together", 400, f"Fine-tune job {job.id} is still running; cancel it first")
            job.deleted = True
            return 200, {}, json.dumps({"message": f"Fine-tune job {job.id} deleted"})
        if rest[1:] == ["cancel"] and method == "POST":
            return self._cancel_job(job)
        if rest[1:] == ["events"] and method == "GET":
            return 200, {}, json.dumps({"data": self._together_events(job)})
        if rest[1:] == ["metrics"] and method == "GET":
            return self._together_metrics(job, q)
        return None

    def _together_create(self, raw):
        try:
            req = json.loads(raw.decode() or "{}")
        except json.JSONDecodeError as exc:
            return self._ft_err("together", 400, f"invalid JSON: {exc}")
        model = req.get("model")
        if req.get("from_checkpoint") and not model:
            base = self.jobs.get(str(req["from_checkpoint"]).split(":")[0])
            model = base.model if base else None
        if not isinstance(model, str) or not model:
            return self._ft_err("together", 400, "model: a base model or from_checkpoint is required", param="model")
        if not self._ft_model_allowed(model):
            return self._ft_err("together", 400, f"The model {model!r} is not available for fine-tuning",
                                param="model")
        checked = self._check_file("together", req.get("training_file"), "training_file")
        if isinstance(checked, tuple):
            return checked
        training = checked
        if req.get("validation_file"):
            bad = self._check_file("together", req["validation_file"], "validation_file")
            if isinstance(bad, tuple):
                return bad
        limits = TOGETHER_LIMITS
        suffix = req.get("suffix")
        if suffix is not None and (not isinstance(suffix, str) or len(suffix) > 40):
            return self._ft_err("together", 400, "suffix: at most 40 characters", param="suffix")
        n_epochs = req.get("n_epochs", 1)
        if not isinstance(n_epochs, int) or not 1 <= n_epochs <= limits["max_num_epochs"]:
            return self._ft_err("together", 400, f"n_epochs must be between 1 and {limits['max_num_epochs']}",
                                param="n_epochs")
        lr = req.get("learning_rate", 1e-5)
        if not isinstance(lr, (int, float)) or not limits["min_learning_rate"] <= lr <= limits["max_learning_rate"]:
            return self._ft_err("together", 400, f"learning_rate must be between {limits['min_learning_rate']} and "
                                                 f"{limits['max_learning_rate']}", param="learning_rate")
        ttype = req.get("training_type") or {"type": "Lora"}
        sizes = limits["full_training"] if ttype.get("type") == "Full" else limits["lora_training"]
        method_kind = (req.get("training_method") or {}).get("method", "sft")
        if method_kind not in ("sft", "dpo"):
            return self._ft_err("together", 400, "training_method.method must be 'sft' or 'dpo'")
        top = sizes["max_batch_size_dpo"] if method_kind == "dpo" else sizes["max_batch_size"]
        batch = req.get("batch_size", "max")
        if batch in ("max", None):
            batch = top
        if not isinstance(batch, int) or not sizes["min_batch_size"] <= batch <= top:
            return self._ft_err("together", 400, f"batch_size must be between {sizes['min_batch_size']} and {top}",
                                param="batch_size")
        if ttype.get("type") == "Lora":
            r = ttype.setdefault("lora_r", limits["lora_training"]["default_rank"])
            ttype.setdefault("lora_alpha", 2 * r)
            if not isinstance(r, int) or not 1 <= r <= limits["lora_training"]["max_rank"]:
                return self._ft_err("together", 400, f"lora_r must be between 1 and "
                                                     f"{limits['lora_training']['max_rank']}", param="lora_r")
            if not 0 <= float(ttype.get("lora_dropout") or 0) < 1:
                return self._ft_err("together", 400, "lora_dropout must be in [0, 1)", param="lora_dropout")
        if not 0 <= float(req.get("warmup_ratio") or 0) <= 1:
            return self._ft_err("together", 400, "warmup_ratio must be between 0 and 1", param="warmup_ratio")
        n_ckpt = req.get("n_checkpoints", 1)
        if n_ckpt is not None and not 1 <= n_ckpt <= limits["max_num_checkpoints"]:
            return self._ft_err("together", 400, f"n_checkpoints must be between 1 and "
                                                 f"{limits['max_num_checkpoints']}", param="n_checkpoints")
        examples, problem = _together_file_problem(training["content"], method_kind)
        jid = f"ft-{uuid.uuid4()}"
        base_name = model.split("/")[-1]
        name = f"{self.account}/{base_name}-{suffix + '-' if suffix else ''}{jid[3:11]}"
        job = self._new_job("together", jid, model, training, req, n_epochs, batch, float(lr), examples, problem,
                            suffix=suffix, validation=req.get("validation_file") or None, name=name,
                            seed=req.get("random_seed"))
        job.request["training_type"] = ttype
        return 200, {}, json.dumps(self._render_together(job, truncated=True))

    def _together_estimate(self, raw):
        try:
            req = json.loads(raw.decode() or "{}")
        except json.JSONDecodeError as exc:
            return self._ft_err("together", 400, f"invalid JSON: {exc}")
        checked = self._check_file("together", req.get("training_file"), "training_file")
        if isinstance(checked, tuple):
            return checked
        if _together_file_problem(checked["content"], "sft")[1]:
            return 200, {}, json.dumps({"estimation_available": False, "unavailable_reason": "train_file_invalid"})
        n_epochs = int(req.get("n_epochs") or 1)
        train = len(checked["content"].decode(errors="replace")) // 4 * n_epochs
        evals = 0
        if req.get("validation_file") and req["validation_file"] in self.files:
            content = self.files[req["validation_file"]].get("content") or b""
            evals = len(content.decode(errors="replace")) // 4 * int(req.get("n_evals") or 0)
        price = (train + evals) * TOGETHER_USD_PER_MTOK / 1e6
        return 200, {}, json.dumps({"estimation_available": True, "allowed_to_proceed": True,
                                    "estimated_total_price": price, "estimated_train_token_count": train,
                                    "estimated_eval_token_count": evals, "user_limit": 100.0})

    def _render_together(self, job: FineTuneJob, truncated: bool = False) -> dict:
        now = time.monotonic()
        phase = self._ft_phase(job, now)
        offset = self._clock(job, now)
        steps = sum(1 for s in range(1, job.total_steps + 1) if job.step_offset(s) <= offset)
        tokenized = offset >= job.job_s * 0.2 and job.mode != "invalid"
        if phase in ("failed", "invalid"):
            price = 0  # a failed job is refunded
        elif phase == "cancelled":  # billed for the steps it ran
            price = _nano(job.trained_tokens * steps // job.total_steps)
        else:
            price = _nano(job.trained_tokens) if tokenized else None
        req = job.request
        body = {"id": job.id, "status": FT_STATUS["together"][phase], "user_id": "mock-user",
                "created_at": _iso(job.created), "updated_at": _iso(job.created + min(offset, job.end_offset())),
                "started_at": _iso(job.created + job.job_s * 0.2) if offset >= job.job_s * 0.2 else None,
                "model": job.model, "suffix": job.suffix, "model_output_name": job.output_model,
                "adapter_output_name": None, "n_epochs": job.n_epochs, "n_checkpoints": req.get("n_checkpoints", 1),
                "n_evals": req.get("n_evals", 0), "batch_size": job.batch_size, "learning_rate": job.learning_rate,
                "lr_scheduler": req.get("lr_scheduler"), "warmup_ratio": req.get("warmup_ratio", 0.0),
                "max_grad_norm": req.get("max_grad_norm", 1.0), "weight_decay": req.get("weight_decay", 0.0),
                "training_type": req.get("training_type"),
                "training_method": req.get("training_method") or {"method": "sft", "train_on_inputs": "auto"},
                "training_file": job.training_file, "validation_file": job.validation_file or "",
                "packing": req.get("packing", True), "random_seed": job.seed,
                "token_count": job.trained_tokens if tokenized else None, "total_price": price,
                "owner_address": "0xmock", "param_count": 8_030_261_248 if tokenized else None}
        if truncated:
            return body
        remaining = max(0.0, job.end_offset() - offset) if phase not in FT_TERMINAL else 0.0
        body.update({"total_steps": job.total_steps, "steps_completed": steps,
                     "epochs_completed": steps // job.steps_per_epoch, "evals_completed": 0,
                     "queue_depth": 1 if phase in ("validating", "queued") else 0,
                     "progress": {"estimate_available": phase in ("running", "finishing"),
                                  "seconds_remaining": int(math.ceil(remaining))},
                     "events": self._together_events(job),
                     "trainingfile_numlines": job.examples, "trainingfile_size": len(self.files.get(
                         job.training_file, {}).get("content") or b""),
                     "train_on_inputs": (req.get("training_method") or {}).get("train_on_inputs", "auto")})
        return body

    def _together_events(self, job: FineTuneJob) -> list[dict]:
        """Together's events, oldest first (created_at ISO; epoch events carry step / total_steps)."""
        events = []
        for i, (offset, kind, info) in enumerate(self._timeline(job)):
            said: list[tuple[str, str, dict]] = []  # (type, message, extra fields)
            if kind == "created":
                said = [("job_pending", "Fine tune request created", {})]
            elif kind == "validated":
                said = [("job_start", "Job started", {}),
                        ("model_downloading", f"Model data downloading for {job.model}", {}),
                        ("training_data_downloading", "Training data downloading", {})]
            elif kind == "started":
                said = [("training_start", f"Training started for model {job.model}",
                         {"token_count": job.trained_tokens // job.n_epochs, "param_count": 8_030_261_248})]
            elif kind == "step" and info["step"] % job.steps_per_epoch == 0:
                epoch, step = info["step"] // job.steps_per_epoch, info["step"]
                said = [("epoch_complete", f"Epoch {epoch}/{job.n_epochs} completed, at step {step}/"
                                           f"{job.total_steps}: training loss={info['loss']:.4f}",
                         {"step": step, "total_steps": job.total_steps})]
            elif kind == "checkpoint":
                said = [("checkpoint_save", f"New checkpoint saved at step {info['step']}",
                         {"step": info["step"], "checkpoint_path": f"s3://mock/{job.id}/checkpoint-{info['step']}"})]
            elif kind == "model":
                said = [("training_complete", "Training completed", {}),
                        ("model_uploading", "Uploading output model", {}),
                        ("model_upload_complete", f"Model upload complete: {job.output_model}", {})]
            elif kind == "succeeded":
                said = [("job_complete", f"Job finished; output model {job.output_model}", {})]
            elif kind in ("failed", "invalid"):
                said = [("job_error", job.error, {"level": "error"})]
            elif kind == "cancel_requested":
                said = [("cancel_requested", "Job cancellation requested", {})]
            elif kind == "cancelled":
                said = [("job_stopped", "Job stopped (cancelled)", {})]
            for k, (typ, message, extra) in enumerate(said):
                events.append({**self._t_event(job, offset, typ, message, f"{i}.{k}"), **extra})
        return events

    @staticmethod
    def _t_event(job, offset, typ, message, tag):
        return {"object": "fine-tune-event", "created_at": _iso(job.created + offset), "level": "info",
                "message": message, "type": typ, "hash": uuid.uuid5(uuid.NAMESPACE_URL, f"{job.id}/{tag}").hex}

    def _together_metrics(self, job: FineTuneJob, q):
        lo = int((q.get("global_step_from") or ["0"])[0])
        hi = int((q.get("global_step_to") or [str(10 ** 9)])[0])
        rows = [{"train/global_step": float(info["step"]), "train/epoch": info["step"] / job.steps_per_epoch,
                 "train/loss": info["loss"], "train/learning_rate": job.learning_rate}
                for _, kind, info in self._timeline(job) if kind == "step" and lo <= info["step"] <= hi]
        return 200, {}, json.dumps({"metrics": rows})

    # ---- the job's life --------------------------------------------------------------------------------------

    def _new_job(self, vendor, jid, model, training, req, n_epochs, batch, lr, examples, problem, *, suffix,
                 validation, name, metadata=None, seed=None) -> FineTuneJob:
        content = training["content"]
        with self.batch_lock:
            fail, self._fail_next = self._fail_next, None
            self.jobs_created += 1
            job = FineTuneJob(id=jid, vendor=vendor, model=model, training_file=training["id"],
                              validation_file=validation, suffix=suffix, n_epochs=n_epochs, batch_size=batch,
                              learning_rate=lr, request=dict(req), seq=self.jobs_created, created=time.time(),
                              started=time.monotonic(), job_s=self.job_s, examples=max(1, examples),
                              chars=len(content.decode(errors="replace")), output_model=name, metadata=metadata,
                              seed=seed if isinstance(seed, int) else 42, cancel_s=self.job_s / 10)
            if problem:
                job.mode, job.error, job.error_code = "invalid", problem, "invalid_training_file"
            elif fail:
                job.mode, (job.error, job.error_code) = "failed", fail
            self.jobs[jid] = job
            self.ft_names[name] = jid
        return job

    def _clock(self, job: FineTuneJob, now: float) -> float:
        """Seconds of the job's life that have happened (stopped at a cancel)."""
        offset = now - job.started
        if job.cancel_at is not None:
            offset = min(offset, job.cancel_at - job.started)
        return offset

    def _ft_phase(self, job: FineTuneJob, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        if job.cancel_at is not None:
            if job.vendor == "openai" or now - job.cancel_at >= job.cancel_s:
                return "cancelled"
            return "cancelling"
        offset = now - job.started
        if offset >= job.end_offset():
            return job.mode
        frac = offset / job.job_s if job.job_s > 0 else 1.0
        return ("validating" if frac < 0.1 else "queued" if frac < 0.2 else "running" if frac < 0.9
                else "finishing")

    def _end_wall(self, job: FineTuneJob, phase: str) -> float | None:
        if phase not in FT_TERMINAL:
            return None
        if phase == "cancelled":
            return job.created + (job.cancel_at - job.started) + (job.cancel_s if job.vendor == "together" else 0)
        return job.created + job.end_offset()

    def _timeline(self, job: FineTuneJob) -> list[tuple[float, str, dict]]:
        """The job's events that have happened: (seconds after creation, kind, info), oldest first."""
        now = time.monotonic()
        offset = self._clock(job, now)
        end = job.end_offset()
        plan: list[tuple[float, str, dict]] = [(0.0, "created", {}), (0.0, "validating", {})]
        if job.mode == "invalid":
            plan.append((end, "invalid", {}))
        else:
            plan += [(job.job_s * 0.1, "validated", {}), (job.job_s * 0.2, "started", {})]
            for s in range(1, job.total_steps + 1):
                at = job.step_offset(s)
                if job.mode == "failed" and at >= end:
                    break
                plan.append((at, "step", {"step": s, "epoch": (s - 1) // job.steps_per_epoch + 1,
                                          "loss": job.loss(s), "accuracy": job.accuracy(s)}))
            if job.mode == "failed":
                plan.append((end, "failed", {}))
            else:
                plan += [(job.job_s * 0.9, "checkpoint", {"step": job.total_steps}),
                         (job.job_s * 0.95, "model", {}), (end, "succeeded", {})]
        happened = [e for e in plan if e[0] <= offset]
        if job.cancel_at is not None:
            at = job.cancel_at - job.started
            if job.vendor == "openai":
                happened.append((at, "cancelled", {}))
            else:
                happened.append((at, "cancel_requested", {}))
                if now - job.cancel_at >= job.cancel_s:
                    happened.append((at + job.cancel_s, "cancelled", {}))
        return happened

    def _cancel_job(self, job: FineTuneJob):
        now = time.monotonic()
        with job.lock:
            phase = self._ft_phase(job, now)
            if phase in ("succeeded", "failed", "invalid"):
                return self._ft_err(job.vendor, 400, f"Job {job.id} has already completed "
                                                     f"({FT_STATUS[job.vendor][phase]}) and cannot be cancelled")
            if phase not in ("cancelled", "cancelling"):
                job.cancel_at = now
        if job.vendor == "openai":
            return 200, {}, json.dumps(self._render_openai(job))
        return 200, {}, json.dumps(self._render_together(job, truncated=True))

    def _result_file(self, job: FineTuneJob) -> None:
        """OpenAI's results file (step, train_loss, train_accuracy), created once when the job succeeds."""
        with self.batch_lock:
            if job.result_file_id:
                return
            rows = ["step,train_loss,train_accuracy,valid_loss,valid_mean_token_accuracy"]
            rows += [f"{s},{job.loss(s)},{job.accuracy(s)},," for s in range(1, job.total_steps + 1)]
            fid = f"file-{uuid.uuid4().hex[:24]}"
            self.files[fid] = {"id": fid, "vendor": "openai", "purpose": "fine-tune-results",
                               "filename": "step_metrics.csv", "content": ("\n".join(rows) + "\n").encode(),
                               "created_at": int(job.created + job.end_offset()), "kind": "output"}
            job.result_file_id = fid

    def _ft_newest_first(self, vendor: str) -> list[FineTuneJob]:
        with self.batch_lock:
            return sorted((j for j in self.jobs.values() if j.vendor == vendor and not j.deleted),
                          key=lambda j: -j.seq)

    # ---- checks ----------------------------------------------------------------------------------------------

    def _check_file(self, vendor: str, fid, param: str):
        """The file record, or a 400 answer: the file must be this vendor's, purpose fine-tune, complete."""
        f = self.files.get(fid) if isinstance(fid, str) else None
        if f is None or f["vendor"] != vendor:
            return self._ft_err(vendor, 400, f"invalid {param}: {fid} (no such file)", "invalid_file_id", param)
        if f.get("purpose") != "fine-tune":
            return self._ft_err(vendor, 400, f"File {fid} has purpose {f.get('purpose')!r}; a fine-tuning "
                                             f"{param} must be uploaded with purpose 'fine-tune'",
                                "invalid_file_purpose", param)
        if f.get("content") is None:
            return self._ft_err(vendor, 400, f"File {fid} has not finished uploading", "file_not_ready", param)
        return f

    def _ft_model_allowed(self, model: str) -> bool:
        return self.ft_models is None or model in self.ft_models

    @staticmethod
    def _ft_err(vendor: str, status: int, message: str, code: str | None = None, param: str | None = None):
        kind = "invalid_request_error"
        return status, {}, json.dumps({"error": {"message": message, "type": kind, "param": param, "code": code}})

    # ---- serving fine-tuned models ---------------------------------------------------------------------------

    def _reply(self, req, prompt, anthropic, fault):
        model = req.get("model")
        if not anthropic and isinstance(model, str):
            jid = self.ft_names.get(model)
            job = self.jobs.get(jid) if jid else None
            if job is not None and self._ft_phase(job) == "succeeded" and not job.deleted:
                # The fine-tuned model answers as its base does, seeded by its name too: a different answer.
                return MockAPI._reply(self, req, prompt + f"\n[fine-tuned model {model}]", anthropic, fault)
            if model.startswith("ft:") or jid is not None or (
                    self.ft_models is not None and model not in self.ft_models):
                body = {"error": {"message": f"The model `{model}` does not exist or you do not have access to it.",
                                  "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
                return 404, {}, json.dumps(body)
        return super()._reply(req, prompt, anthropic, fault)


# ---- training-file rules ---------------------------------------------------------------------------------------

def _nano(tokens: int) -> int:
    """Together's total_price (nano-dollars) for this many trained tokens."""
    return round(tokens * TOGETHER_USD_PER_MTOK * NANODOLLAR / 1_000_000)


def _lines(content: bytes):
    for i, line in enumerate(content.decode(errors="replace").splitlines(), 1):
        if line.strip():
            yield i, line


def _openai_file_problem(content: bytes, kind: str) -> tuple[int, str | None]:
    """(examples, the reason OpenAI's validation fails the job, or None). Chat format (supervised), preference
    format (dpo); at least 10 examples."""
    n = 0
    for i, line in _lines(content):
        n += 1
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            return n, f"Invalid file format. Line {i}: not valid JSON."
        if not isinstance(item, dict):
            return n, f"Invalid file format. Line {i}: each line must be a JSON object."
        if kind == "dpo":
            if not all(k in item for k in ("input", "preferred_output", "non_preferred_output")):
                return n, (f"Invalid file format. Line {i}: a preference example needs input, preferred_output "
                           f"and non_preferred_output.")
            continue
        if kind == "reinforcement":
            continue
        messages = item.get("messages")
        if not isinstance(messages, list) or not messages:
            return n, f"Invalid file format. Line {i}, key \"messages\": a non-empty list of messages is required."
        if "tools" in item and not isinstance(item["tools"], list):
            return n, f"Invalid file format. Line {i}, key \"tools\": must be a list."
        assistant = False
        for j, m in enumerate(messages):
            role = m.get("role") if isinstance(m, dict) else None
            if role not in OPENAI_ROLES:
                return n, f"Invalid file format. Line {i}, message {j}: unrecognized role {role!r}."
            if role == "assistant":
                assistant = True
                calls = m.get("tool_calls")
                if calls is not None and not (isinstance(calls, list) and all(
                        isinstance(c, dict) and isinstance((c.get("function") or {}).get("name"), str)
                        and isinstance((c.get("function") or {}).get("arguments"), str) for c in calls)):
                    return n, (f"Invalid file format. Line {i}, message {j}: tool_calls must be a list of "
                               f"{{id, type, function: {{name, arguments (a JSON string)}}}}.")
                if m.get("content") is None and not calls and not m.get("function_call"):
                    return n, f"Invalid file format. Line {i}, message {j}: an assistant message needs content."
            elif "content" not in m:
                return n, f"Invalid file format. Line {i}, message {j}: missing key \"content\"."
        if not assistant:
            return n, f"Invalid file format. Line {i}: an example needs at least one assistant message."
    if n < OPENAI_MIN_EXAMPLES:
        return n, (f"The job failed due to an invalid training file. Expected file to have at least "
                   f"{OPENAI_MIN_EXAMPLES} lines, but got {n}.")
    return n, None


def _together_file_problem(content: bytes, kind: str) -> tuple[int, str | None]:
    """(examples, the reason Together's server-side check rejects the file, or None)."""
    n = 0
    for i, line in _lines(content):
        n += 1
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            return n, f"Invalid training file: line {i} is not valid JSON"
        if not isinstance(item, dict):
            return n, f"Invalid training file: line {i} is not a JSON object"
        if kind == "dpo":
            if not all(k in item for k in ("input", "preferred_output", "non_preferred_output")):
                return n, f"Invalid training file: line {i} lacks the preference columns"
            continue
        if "messages" in item:
            messages = item["messages"]
            if not isinstance(messages, list) or not messages:
                return n, f"Invalid training file: line {i}: messages must be a non-empty list"
            for m in messages:
                if not isinstance(m, dict) or m.get("role") not in TOGETHER_ROLES:
                    role = m.get("role") if isinstance(m, dict) else None
                    return n, (f"Invalid training file: line {i}: role {role!r} is not one of "
                               f"{sorted(TOGETHER_ROLES)}")
        elif "text" in item or ("prompt" in item and "completion" in item):
            continue
        else:
            return n, f"Invalid training file: line {i} has none of 'messages', 'text', 'prompt'+'completion'"
    if n < 1:
        return n, "Invalid training file: no samples"
    return n, None

