"""train_chat on a hosted fine-tuning service (train_chat.backend together | openai), as a user runs it:
loopback servers in each vendor's fine-tuning wire format, driven by the real SDKs. The local check of the
training file (a test per rule, with the message a user sees); one upload and one job whatever kills the
process; a failed job stops the stage with the vendor's message; the fine-tuned model answers evaluate_chat."""
import json
import os
import subprocess
import sys

import pytest

from distillery.records import write_records
from distillery.testing.mock_finetune import MockFineTuneAPI
from distillery.training.hosted import check_examples
from tests.conftest import ROOT, conversation, params_file, restart_when

KEYS = {"OPENAI_API_KEY": "sk-ft-SECRET1", "TOGETHER_API_KEY": "together-ft-SECRET2"}
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **KEYS}
BASES = {"openai": "gpt-4.1-mini-2025-04-14", "together": "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"}


def examples(n):
    return [conversation(f"c{i}", f"Sunny and 20 degrees in Paris, day {i}.") for i in range(n)]


# --- the local check, one rule at a time -------------------------------------------------------------
def problems(exs, vendor="openai", min_examples=1, max_tokens=10_000):
    return check_examples(exs, vendor, min_examples, max_tokens)


def test_a_valid_split_has_no_problems():
    assert problems(examples(12), min_examples=10) == []


def test_too_few_examples():
    assert problems(examples(3), min_examples=10) == [
        "openai fine-tuning needs at least 10 training examples; the split has 3 (lower train_chat.max_examples' "
        "cut, or add conversations)"]


@pytest.mark.parametrize("change,message", [
    (lambda m: m[1].update(role="human"), "example c0: role human is not one of system, user, assistant, tool"),
    (lambda m: m.pop(1), "example c0: the conversation must open with a user message (after any system message)"),
    (lambda m: m[4].update(content=""), "example c0, message 4: an assistant turn with neither content nor tool calls"),
    (lambda m: m[3].update(tool_call_id="nope"),
     "example c0, message 3: a tool result whose tool_call_id 'nope' answers no earlier call"),
    (lambda m: m[2]["tool_calls"][0]["function"].update(arguments="{city: Paris"),
     "example c0, message 2: tool call get_weather: arguments are not JSON ('{city: Paris')"),
    (lambda m: m[2]["tool_calls"][0]["function"].update(arguments="[1, 2]"),
     "example c0, message 2: tool call get_weather: arguments must be a JSON object"),
    (lambda m: m[2]["tool_calls"][0].update(id=None),
     "example c0, message 2: tool call needs an id, type 'function' and a function name"),
    (lambda m: m.insert(2, {"role": "system", "content": "late"}),
     "example c0, message 2: a system message after the conversation started"),
    (lambda m: m.append({"role": "user", "content": "thanks"}),
     "example c0: the conversation must end with the assistant's answer (the trained target)"),
])
def test_each_rule_names_the_example_and_what_is_wrong(change, message):
    ex = examples(1)
    change(ex[0]["messages"])
    assert message in problems(ex)


def test_an_example_over_the_token_limit():
    ex = examples(1)
    ex[0]["messages"][-1]["content"] = "word " * 2000
    assert problems(ex, max_tokens=1000) == [
        "example c0: about 2602 tokens, over the 1000-token limit per example (train_chat.hosted.max_example_tokens)"]


# --- the stage against the loopback vendors ----------------------------------------------------------
def setup(tmp_path, api, vendor, n=12, **hosted):
    split = tmp_path / "splits"
    split.mkdir(parents=True, exist_ok=True)
    write_records(split / "train.jsonl", examples(n))
    write_records(split / "val.jsonl", examples(2))
    suffix = "/v1" if vendor == "openai" else ""
    params = {"base": {"state_dir": str(tmp_path / "state"),
                       "prices": {BASES[vendor]: {"input": 1.0, "output": 2.0, "training": 5.0}}},
              "train_chat": {"backend": vendor, "batch_size": 8, "max_examples": 0, "epochs": 2.0,
                             "hosted": {"model": BASES[vendor], "base_url": api.url + suffix, "poll_s": 0.05,
                                        **hosted}}}
    params_file(tmp_path / "params.yaml", params)


def train_cmd(tmp_path, *extra):
    return [sys.executable, str(ROOT / "stages" / "train_chat.py"), "--params", str(tmp_path / "params.yaml"),
            "--splits", str(tmp_path / "splits"), "--model-dir", str(tmp_path / "models" / "chat"),
            "--metrics", str(tmp_path / "metrics.json"), "--details", str(tmp_path / "details.json"),
            "--live-dir", str(tmp_path / "dvclive"), "--figure", str(tmp_path / "curves.svg"), *extra]


def train(tmp_path, env=None, *extra):
    return subprocess.run(train_cmd(tmp_path, *extra), env={**ENV, **(env or {})}, capture_output=True, text=True,
                          timeout=120)


@pytest.mark.parametrize("vendor", ["openai", "together"])
def test_a_hosted_job_trains_the_student_and_a_rerun_uploads_and_trains_nothing(tmp_path, vendor):
    with MockFineTuneAPI(job_s=0.6) as api:
        setup(tmp_path, api, vendor)
        out = train(tmp_path)
        assert out.returncode == 0, out.stderr
        hosted = json.loads((tmp_path / "models/chat/hosted.json").read_text())
        assert hosted["fine_tuned_model"] in api.ft_names and hosted["base_model"] == BASES[vendor]
        assert hosted["job_id"] in api.jobs and hosted["file_id"] in api.training_files
        assert hosted["hyperparameters"]["n_epochs"] == 2 and hosted["trained_tokens"] > 0
        if vendor == "together":  # the vendor reports the cost; LoRA settings are taken
            assert hosted["cost_reported_by_vendor"] and hosted["hyperparameters"]["lora_r"] == 16
            assert set(hosted["ignored"]) == {"max_length"}
        else:  # OpenAI: no cost in the job (computed from base.prices' training price), no LoRA settings
            assert hosted["cost_usd"] == pytest.approx(hosted["trained_tokens"] * 5.0 / 1e6, abs=1e-4)
            assert {"learning_rate", "lora", "max_length"} <= set(hosted["ignored"])
            assert "does not take train_chat.lora" in out.stdout
        metrics = json.loads((tmp_path / "details.json").read_text())
        assert metrics["backend"] == vendor and metrics["first_loss"] > metrics["train_loss"]
        assert (tmp_path / "dvclive" / "plots" / "metrics" / "train" / "loss.tsv").exists()
        assert (api.ft_uploads, api.jobs_created) == (1, 1)
        out = train(tmp_path)  # dvc repro -f: the same inputs, the job already done
        assert out.returncode == 0, out.stderr
        assert (api.ft_uploads, api.jobs_created) == (1, 1)
        assert json.loads((tmp_path / "models/chat/hosted.json").read_text())["job_id"] == hosted["job_id"]


def test_a_failed_job_stops_the_stage_with_the_vendors_message(tmp_path):
    with MockFineTuneAPI(job_s=0.4) as api:
        api.fail_next_job("The job ran out of GPU memory at step 3")
        setup(tmp_path, api, "openai")
        out = train(tmp_path)
        assert out.returncode == 5 and "ran out of GPU memory at step 3" in out.stderr, out.stderr
        assert not (tmp_path / "models/chat/hosted.json").exists()
        out = train(tmp_path)  # the next run starts a new job, on the same uploaded file
        assert out.returncode == 0, out.stderr
        assert (api.ft_uploads, api.jobs_created) == (1, 2)


def test_the_local_check_stops_before_anything_is_uploaded(tmp_path):
    with MockFineTuneAPI() as api:
        setup(tmp_path, api, "openai", n=4)
        out = train(tmp_path)
        assert out.returncode == 1 and "needs at least 10 training examples; the split has 4" in out.stderr
        assert "nothing was uploaded" in out.stderr and api.ft_uploads == 0 and api.requests == 0


def test_a_budget_refuses_a_job_that_would_pass_it(tmp_path):
    with MockFineTuneAPI() as api:
        setup(tmp_path, api, "openai", budget_usd=0.0001)
        out = train(tmp_path)
        assert out.returncode == 1 and "over train_chat.hosted.budget_usd" in out.stderr, out.stderr
        assert api.jobs_created == 0


def test_a_cut_upload_stops_and_the_rerun_uploads_once(tmp_path):
    with MockFineTuneAPI(job_s=0.3) as api:
        api.cut_next_upload()
        setup(tmp_path, api, "openai")
        out = train(tmp_path)
        assert out.returncode == 1 and "train_chat: openai:" in out.stderr, out.stderr
        out = train(tmp_path)
        assert out.returncode == 0, out.stderr
        assert (api.ft_uploads, api.jobs_created) == (1, 1)


def test_a_server_restart_between_create_and_poll_is_ridden_out(tmp_path):
    with MockFineTuneAPI(job_s=1.0) as api:
        setup(tmp_path, api, "together")
        t = restart_when(api, lambda: api.jobs_created > 0, down_s=0.4)
        out = train(tmp_path)
        t.join()
        assert out.returncode == 0, out.stderr
        assert (api.ft_uploads, api.jobs_created) == (1, 1)


@pytest.mark.slow
@pytest.mark.parametrize("vendor,point", [(v, p) for v in ("openai", "together")
                                          for p in ("file:created", "job:created", "polling")])
def test_kill_9_after_upload_after_create_or_while_polling_then_one_upload_and_one_job(tmp_path, vendor, point):
    with MockFineTuneAPI(job_s=0.5) as api:
        setup(tmp_path, api, vendor)
        killed = train(tmp_path, {"DISTILLERY_CRASH_AT": point})
        assert killed.returncode == -9, killed.stderr
        out = train(tmp_path)
        assert out.returncode == 0, out.stderr
        assert (api.ft_uploads, api.jobs_created) == (1, 1)
    assert json.loads((tmp_path / "models/chat/hosted.json").read_text())["fine_tuned_model"]


def test_make_plan_shows_training_tokens_and_cost_before_anything_is_paid(tmp_path):
    with MockFineTuneAPI() as api:
        setup(tmp_path, api, "openai")
        out = train(tmp_path, None, "--dry-run")
        assert out.returncode == 0, out.stderr
        plan = json.loads(next(ln for ln in out.stdout.splitlines() if ln.startswith("PLAN "))[5:])
        assert api.requests == 0
    assert plan["stage"] == "train_chat" and plan["records"] == 12 and plan["calls"] == 0
    assert plan["input_tokens"] > 0 and plan["cost_usd_max"] == pytest.approx(plan["input_tokens"] * 5.0 / 1e6, abs=1e-4)
    assert "× 2 epoch(s)" in plan["note"] and plan["setup_problems"] == []


def test_make_jobs_lists_a_running_job_and_cancels_it_then_the_stage_says_so(tmp_path):
    with MockFineTuneAPI(job_s=30) as api:
        setup(tmp_path, api, "together")
        assert train(tmp_path, {"DISTILLERY_CRASH_AT": "polling"}).returncode == -9
        cmd = [sys.executable, "-m", "distillery.pipeline.batches", "--params", str(tmp_path / "params.yaml")]
        listed = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=tmp_path)
        job_id = next(iter(api.jobs))
        assert listed.returncode == 0 and job_id in listed.stdout and "train_chat" in listed.stdout, listed.stderr
        assert any(word in listed.stdout for word in ("running", "queued", "pending")), listed.stdout
        cancelled = subprocess.run(cmd + ["--cancel", job_id], env=ENV, capture_output=True, text=True, cwd=tmp_path)
        assert cancelled.returncode == 0, cancelled.stdout + cancelled.stderr
        out = train(tmp_path)  # the cancelled job: the stage stops with the vendor's state, no new job
        assert out.returncode == 5 and "cancel" in out.stderr and api.jobs_created == 1, out.stderr
