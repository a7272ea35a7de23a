"""The chat student trained by a vendor (train_chat.backend: together | openai), inside the pipeline.

1. The SFT split becomes the vendor's training file (`{"messages": [...], "tools": [...]}` per line: chat
   messages with tool calls and tool results, which both vendors take) and is **checked here against the
   vendor's documented rules** before anything is paid (`check_examples`): every problem is listed with the
   example's id, so a job never fails validation after upload.
2. The file is uploaded once (its content hash names it; the ledger maps it to the vendor's file id), the
   job is created once (its tag hashes the file, the model, the hyperparameters and the suffix), both
   through engine/remote.py's cycle: an intent before, the id after, the vendor's list asked after a crash.
3. The job is polled (state, step, loss, ETA); on success the losses become the same training metrics and
   curves a local run writes, and `hosted.json` names the fine-tuned model for evaluate_chat, which calls
   it through the engine (cached, resumable, budgeted). A failed or cancelled job stops the stage (exit 5)
   with the vendor's message; the next run starts a new job only then.
"""
from __future__ import annotations

import hashlib
import json
import time

from distillery.engine.remote import Ledger, crash_point, submit_once, wait
from distillery.providers.batching import STAGE_KEY, TAG_KEY

ROLES = {"system", "user", "assistant", "tool"}
MAX_FILE_BYTES = 512 * 2**20  # OpenAI's documented file limit (Together's is larger)
HOSTED_FILE = "hosted.json"


def training_line(example: dict) -> dict:
    """One example as the vendors' conversational fine-tuning format takes it."""
    keep = ("role", "content", "tool_calls", "tool_call_id", "name")
    line = {"messages": [{k: m[k] for k in keep if m.get(k) is not None} for m in example["messages"]]}
    if example.get("tools"):
        line["tools"] = example["tools"]
    return line


def check_examples(examples: list[dict], vendor: str, min_examples: int, max_tokens: int) -> list[str]:
    """Every way `examples` break the vendor's documented rules, one line each naming the example: too few
    examples; a role the format lacks; a conversation that does not open with system/user, an assistant turn
    with nothing in it, a tool result that answers no call, a tool call whose arguments are not a JSON object,
    a conversation that does not end with the assistant's answer; an example over the token limit."""
    problems = []
    if len(examples) < min_examples:
        problems.append(f"{vendor} fine-tuning needs at least {min_examples} training examples; the split has "
                        f"{len(examples)} (lower train_chat.max_examples' cut, or add conversations)")
    for ex in examples:
        msgs, where = ex["messages"], f"example {ex.get('id', '?')}"
        bad_roles = sorted({str(m.get("role")) for m in msgs} - ROLES)
        if bad_roles:
            problems.append(f"{where}: role {', '.join(bad_roles)} is not one of system, user, assistant, tool")
            continue
        first = next((m for m in msgs if m["role"] != "system"), None)
        if first is None or first["role"] != "user":
            problems.append(f"{where}: the conversation must open with a user message (after any system message)")
        open_calls: set = set()
        for i, m in enumerate(msgs):
            if m["role"] == "assistant":
                if not (m.get("content") or "").strip() and not m.get("tool_calls"):
                    problems.append(f"{where}, message {i}: an assistant turn with neither content nor tool calls")
                for c in m.get("tool_calls") or []:
                    problem = _call_problem(c)
                    if problem:
                        problems.append(f"{where}, message {i}: tool call {problem}")
                    open_calls.add(c.get("id"))
            elif m["role"] == "tool":
                if m.get("tool_call_id") not in open_calls:
                    problems.append(f"{where}, message {i}: a tool result whose tool_call_id "
                                    f"{m.get('tool_call_id')!r} answers no earlier call")
            elif m["role"] == "system" and i > 0:
                problems.append(f"{where}, message {i}: a system message after the conversation started")
        if msgs and msgs[-1]["role"] != "assistant":
            problems.append(f"{where}: the conversation must end with the assistant's answer (the trained target)")
        tokens = len(json.dumps(training_line(ex), ensure_ascii=False)) // 4
        if tokens > max_tokens:
            problems.append(f"{where}: about {tokens} tokens, over the {max_tokens}-token limit per example "
                            "(train_chat.hosted.max_example_tokens)")
    return problems


def _call_problem(call: dict) -> str | None:
    fn = call.get("function") or {}
    if call.get("type", "function") != "function" or not call.get("id") or not fn.get("name"):
        return "needs an id, type 'function' and a function name"
    try:
        args = json.loads(fn.get("arguments") or "")
    except (TypeError, ValueError):
        return f"{fn['name']}: arguments are not JSON ({str(fn.get('arguments'))[:60]!r})"
    return None if isinstance(args, dict) else f"{fn['name']}: arguments must be a JSON object"


def training_file(examples: list[dict]) -> bytes:
    return "".join(json.dumps(training_line(e), ensure_ascii=False, sort_keys=True) + "\n" for e in examples).encode()


def plan(examples: list[dict], hyper: dict, model: str, prices: dict) -> dict:
    """Training tokens × epochs and the cost at base.prices' training price (an estimate: 4 characters a token)."""
    tokens = len(training_file(examples)) // 4
    trained = tokens * hyper["n_epochs"]
    price = prices.get(model)
    per_m = getattr(price, "training", None) if price else None
    return {"examples": len(examples), "tokens": tokens, "epochs": hyper["n_epochs"], "trained_tokens": trained,
            "priced": per_m is not None, "cost_usd_max": round(trained * per_m / 1e6, 4) if per_m else 0.0}


def train(api, examples: list[dict], cfg, base, progress: bool = True) -> tuple[dict, list[dict]]:
    """Upload, create, poll, collect (each once, whatever kills the process between them). Returns the
    hosted model's description (hosted.json) and the loss history."""
    hosted = cfg.hosted
    hyper, ignored = api.hyperparameters(cfg)
    data = training_file(examples)
    digest = hashlib.sha256(data).hexdigest()[:20]
    ledger = Ledger.for_stage(base.state_dir, "train_chat", base.cache_path)
    where = {"provider": api.provider_name, "base_url": hosted.base_url, "model": hosted.model, "vendor": api.vendor}
    with ledger.locked():
        file_tag = f"train_chat-file-{digest}"
        name = f"{file_tag}.jsonl"
        file_id = submit_once(ledger, file_tag, lambda: api.upload(data, name), lambda job: api.find_file(name),
                              kind="file", bytes=len(data), **where)
        recipe = json.dumps([digest, hosted.model, hyper, hosted.suffix, base.seed], sort_keys=True)
        job_tag = f"train_chat-job-{hashlib.sha256(recipe.encode()).hexdigest()[:20]}"
        tag = {STAGE_KEY: "train_chat", TAG_KEY: job_tag}
        estimate = api.estimate(file_id, hosted.model, hyper)
        planned = plan(examples, hyper, hosted.model, base.prices)
        cost = estimate if estimate is not None else planned["cost_usd_max"]
        job = ledger.entries().get(job_tag)
        reuse = job and job.get("id") and job.get("state") == api.SUCCEEDED
        if not reuse and hosted.budget_usd is not None:
            if estimate is None and not planned["priced"]:
                raise SystemExit(f"train_chat: a budget of ${hosted.budget_usd:g} cannot be kept: no training price for "
                                 f"{hosted.model} in base.prices (USD per million training tokens)")
            if cost > hosted.budget_usd:
                raise SystemExit(f"train_chat: the job would cost about ${cost:.2f} ({planned['trained_tokens']} "
                                 f"training tokens), over train_chat.hosted.budget_usd ${hosted.budget_usd:g}: not started")
        since = time.time() - 5
        job_id = job["id"] if reuse else submit_once(
            ledger, job_tag, lambda: api.create(file_id, hosted.model, hyper, hosted.suffix, base.seed, tag),
            lambda j: api.find_job({**tag, "training_file": file_id, "model": hosted.model}, since - 3600,
                                   ledger.known_ids()),
            kind="job", file_id=file_id, **where)
        ended: dict = {}
        if not reuse:
            print(f"train_chat: {api.vendor} job {job_id} on {hosted.model} ({len(examples)} examples, "
                  f"{hyper['n_epochs']} epoch(s)); polling every {hosted.poll_s:g} s. Killed, the next run picks it up.")
            wait({job_tag: job_id}, lambda i: (crash_point("polling"), api.status(i))[1],
                 lambda t, i, s: ended.update(status=s), poll_s=hosted.poll_s, describe=describe, total=0,
                 name="train_chat job", progress=progress)
        result = api.result(job_id)
        if not result["succeeded"]:
            ledger.write("closed", job_tag, id=job_id, state=result["state"], error=result["error"])
            raise JobFailed(f"train_chat: the {api.vendor} job {job_id} ended {result['state']}: "
                            f"{result['error'] or 'no reason given'}. The next run starts a new job.")
        ledger.write("closed", job_tag, id=job_id, state=result["state"], model=result["fine_tuned_model"])
    reported = result["reported_cost_usd"]
    price = base.prices.get(hosted.model)
    per_m = getattr(price, "training", None) if price else None
    computed = round(result["trained_tokens"] * per_m / 1e6, 4) if per_m and result["trained_tokens"] else None
    meta = {"kind": "hosted", "provider": api.provider_name, "vendor": api.vendor, "base_url": api.provider.base_url,
            "base_model": hosted.model, "fine_tuned_model": result["fine_tuned_model"], "job_id": job_id,
            "file_id": file_id, "hyperparameters": hyper, "ignored": ignored, "examples": len(examples),
            "trained_tokens": result["trained_tokens"], "estimated_cost_usd": cost,
            "cost_usd": reported if reported is not None else computed, "cost_reported_by_vendor": reported is not None}
    return meta, api.losses(job_id)


class JobFailed(RuntimeError):
    """The vendor's job failed or was cancelled: the stage exits 5 with the vendor's message."""


def describe(statuses: list) -> str:
    s = statuses[-1] if statuses else None
    if s is None:
        return ""
    c = s.counts
    parts = [s.state] + ([f"step {c['step']}/{c.get('total_steps') or '?'}"] if c.get("step") is not None else [])
    parts += [f"loss {c['loss']:.4f}"] if c.get("loss") is not None else []
    parts += [f"ETA {s.eta_s / 60:.0f} min"] if s.eta_s else []
    return ", ".join(parts)
