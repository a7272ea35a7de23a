"""Vendors' fine-tuning APIs as the hosted training cycle sees them (the cycle: distillery.training.hosted).

An adapter translates only: upload a training file, find it again by name, create a job carrying the
project's tag, find that job again after a crash, poll it, read its result, losses and cost, cancel it, and
say which of train_chat's hyperparameters the vendor takes. OpenAI (`openai` SDK; also OpenAI-compatible
services that implement its fine-tuning API) and Together (`together` SDK 3.x). Mistral's SDK as pinned
(mistralai 3.x) has no fine-tuning jobs API, so it is not a backend.
"""
from __future__ import annotations

import tempfile
from pathlib import Path

from distillery.providers.base import classify, get_provider
from distillery.providers.batching import TAG_KEY, RemoteStatus

MAX_LISTED = 1000


def finetune_api(backend: str, model: str, base_url: str | None):
    if backend == "openai":
        return OpenAIFineTune(get_provider("openai_compat", model, base_url or "https://api.openai.com/v1"))
    if backend == "together":
        return TogetherFineTune(get_provider("together", model, base_url))
    raise ValueError(f"no hosted fine-tuning for backend {backend!r}")


class FineTuneAPI:
    vendor = "base"
    provider_name = ""  # the provider that serves the fine-tuned model (evaluate_chat calls it through the engine)
    min_examples = 1
    max_example_tokens = 32768
    ENDED: set = set()
    SUCCEEDED = ""

    def __init__(self, provider):
        self.provider = provider

    @property
    def client(self):
        return self.provider.client

    def call(self, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except Exception as exc:  # noqa: BLE001 - every SDK error becomes a ProviderError
            raise classify(exc, self.vendor) from exc


class OpenAIFineTune(FineTuneAPI):
    """OpenAI's supervised fine-tuning (`method: supervised`). Documented rules: at least 10 examples; each
    line `{"messages": [...], "tools": [...]}`; the model's context bounds an example (65,536 tokens for
    gpt-4o-mini / gpt-4.1-mini); no price in the job: cost = trained tokens × base.prices' training price."""
    vendor, provider_name, min_examples, max_example_tokens = "openai", "openai_compat", 10, 65536
    ENDED, SUCCEEDED = {"succeeded", "failed", "cancelled"}, "succeeded"

    def hyperparameters(self, cfg) -> tuple[dict, dict]:
        """(what is sent, {train_chat param: why it is not})."""
        sent = {"n_epochs": max(1, round(cfg.epochs)), "batch_size": cfg.batch_size * cfg.grad_accum}
        ignored = {"learning_rate": "OpenAI takes a learning_rate_multiplier of its own choosing ('auto')",
                   "lora": "OpenAI chooses its own adapter (r, alpha, dropout, modules are not settable)",
                   "max_length": "examples are bounded by the model's context, not truncated to max_length"}
        if sent["n_epochs"] != cfg.epochs:
            ignored["epochs"] = f"{cfg.epochs} rounded to {sent['n_epochs']} (whole epochs only)"
        return sent, ignored

    def upload(self, data: bytes, name: str) -> str:
        return self.call(self.client.files.create, file=(name, data, "application/jsonl"), purpose="fine-tune").id

    def find_file(self, name: str) -> str | None:
        for n, f in enumerate(self.call(self.client.files.list, purpose="fine-tune")):
            if n >= MAX_LISTED:
                break
            if f.filename == name:
                return f.id
        return None

    def create(self, file_id, model, hyper, suffix, seed, tag) -> str:
        return self.call(self.client.fine_tuning.jobs.create, model=model, training_file=file_id, suffix=suffix,
                         seed=seed, metadata=tag,
                         method={"type": "supervised", "supervised": {"hyperparameters": hyper}}).id

    def find_job(self, tag, since, known) -> str | None:
        for n, j in enumerate(self.call(self.client.fine_tuning.jobs.list, limit=100)):
            if n >= MAX_LISTED or j.created_at < since:
                break
            if (j.metadata or {}).get(TAG_KEY) == tag[TAG_KEY] and j.id not in known:
                return j.id
        return None

    def status(self, job_id) -> RemoteStatus:
        j = self.client.fine_tuning.jobs.retrieve(job_id)
        counts = {}
        for e in self.client.fine_tuning.jobs.list_events(job_id, limit=20).data or []:  # newest first
            if e.type == "metrics" and e.data:
                counts = {"step": e.data.get("step"), "total_steps": e.data.get("total_steps"),
                          "loss": e.data.get("train_loss")}
                break
        eta = max(0.0, j.estimated_finish - j.created_at) if j.estimated_finish else None
        return RemoteStatus(j.status, j.status in self.ENDED, counts, counts.get("total_steps") or 0, eta,
                            error=j.error.message if j.error and j.error.message else None)

    def result(self, job_id) -> dict:
        j = self.call(self.client.fine_tuning.jobs.retrieve, job_id)
        return {"state": j.status, "succeeded": j.status == self.SUCCEEDED, "fine_tuned_model": j.fine_tuned_model,
                "trained_tokens": j.trained_tokens, "reported_cost_usd": None,
                "error": j.error.message if j.error and j.error.message else None,
                "hyperparameters_used": dict(j.hyperparameters) if j.hyperparameters else None}

    def losses(self, job_id) -> list[dict]:
        rows = []
        for n, e in enumerate(self.call(self.client.fine_tuning.jobs.list_events, job_id, limit=100)):
            if n >= 100_000:
                break
            if e.type == "metrics" and e.data and e.data.get("train_loss") is not None:
                rows.append({"step": e.data["step"], "loss": e.data["train_loss"],
                             **({"eval_loss": e.data["valid_loss"]} if e.data.get("valid_loss") is not None else {})})
        return sorted(rows, key=lambda r: r["step"])

    def estimate(self, file_id, model, hyper) -> float | None:
        return None  # OpenAI's SDK has no price estimate

    def cancel(self, job_id) -> None:
        self.call(self.client.fine_tuning.jobs.cancel, job_id)


class TogetherFineTune(FineTuneAPI):
    """Together's fine-tuning (SDK 3.x `client.fine_tuning`): LoRA with r / alpha / dropout / modules; the
    upload is a file on disk; no metadata on a job, so a job is found again by its training file and model;
    the price is estimated before the job (estimate_price) and reported after (total_price, nano-dollars)."""
    vendor, provider_name, min_examples, max_example_tokens = "together", "together", 1, 32768
    ENDED, SUCCEEDED = {"completed", "cancelled", "error", "user_error"}, "completed"

    def hyperparameters(self, cfg) -> tuple[dict, dict]:
        lora = cfg.lora
        sent = {"n_epochs": max(1, round(cfg.epochs)), "learning_rate": cfg.learning_rate,
                "batch_size": cfg.batch_size * cfg.grad_accum, "lora": True, "lora_r": lora.r,
                "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
                "lora_trainable_modules": ",".join(lora.target_modules)}
        ignored = {"max_length": "Together trains on the model's own maximum sequence length"}
        if sent["n_epochs"] != cfg.epochs:
            ignored["epochs"] = f"{cfg.epochs} rounded to {sent['n_epochs']} (whole epochs only)"
        return sent, ignored

    def upload(self, data: bytes, name: str) -> str:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / name
            path.write_bytes(data)
            return self.call(self.client.files.upload, file=path, purpose="fine-tune", check=False).id

    def find_file(self, name: str) -> str | None:
        files = self.call(self.client.files.list)
        return next((f.id for f in getattr(files, "data", files) or [] if getattr(f, "filename", None) == name), None)

    def create(self, file_id, model, hyper, suffix, seed, tag) -> str:
        return self.call(self.client.fine_tuning.create, training_file=file_id, model=model, suffix=suffix[:40],
                         random_seed=seed, **hyper).id

    def find_job(self, tag, since, known) -> str | None:
        jobs = self.call(self.client.fine_tuning.list)
        for j in getattr(jobs, "data", jobs) or []:
            created = j.created_at.timestamp() if hasattr(j.created_at, "timestamp") else 0
            if (j.training_file == tag["training_file"] and j.model == tag["model"] and created >= since
                    and j.id not in known):
                return j.id
        return None

    def status(self, job_id) -> RemoteStatus:
        j = self.client.fine_tuning.retrieve(job_id)
        counts = {k: v for k, v in (("step", getattr(j, "steps_completed", None)),
                                    ("total_steps", getattr(j, "total_steps", None)),
                                    ("epoch", getattr(j, "epochs_completed", None))) if v is not None}
        progress = getattr(j, "progress", None)
        eta = getattr(progress, "seconds_remaining", None) if progress else None
        return RemoteStatus(j.status, j.status in self.ENDED, counts, counts.get("total_steps") or 0, eta)

    def result(self, job_id) -> dict:
        j = self.call(self.client.fine_tuning.retrieve, job_id)
        name = getattr(j, "x_model_output_name", None) or getattr(j, "output_name", None) \
            or getattr(j, "model_output_name", None)
        error = None
        if j.status != self.SUCCEEDED:
            events = self.call(self.client.fine_tuning.list_events, job_id)
            errors = [e.message for e in getattr(events, "data", events) or [] if getattr(e, "level", "") == "error"
                      or "error" in str(getattr(e, "type", ""))]
            error = errors[-1] if errors else None
        price = getattr(j, "total_price", None)
        return {"state": j.status, "succeeded": j.status == self.SUCCEEDED, "fine_tuned_model": name,
                "trained_tokens": getattr(j, "token_count", None), "error": error,
                "reported_cost_usd": price / 1e9 if price else None, "hyperparameters_used": None}

    def losses(self, job_id) -> list[dict]:
        metrics = self.call(self.client.fine_tuning.list_metrics, job_id)
        rows = getattr(metrics, "metrics", None) or []
        out = []
        for m in rows:
            m = m if isinstance(m, dict) else m.model_dump(by_alias=True)
            if m.get("train/loss") is not None:
                out.append({"step": int(m.get("train/global_step") or len(out) + 1), "loss": m["train/loss"]})
        return out

    def estimate(self, file_id, model, hyper) -> float | None:
        est = self.call(self.client.fine_tuning.estimate_price, training_file=file_id, model=model,
                        n_epochs=hyper["n_epochs"])
        return est.estimated_total_price if getattr(est, "estimation_available", False) else None

    def cancel(self, job_id) -> None:
        self.call(self.client.fine_tuning.cancel, job_id)
