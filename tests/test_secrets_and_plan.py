"""`dvc repro` on hosted providers (real SDKs, loopback servers) with fake keys in the environment:
no key reaches any output, metric, cache, journal, ledger, log or dvc.lock; and `make plan`'s estimate.
label runs in vendor batches (`label.batch: true`), the stages before it live."""
import json

import pytest
import yaml

from distillery.testing.demo_corpus import build
from distillery.testing.mock_finetune import MockFineTuneAPI
from distillery.records import write_records
from tests.conftest import ROOT
from tests.test_pipeline import copy_project, merge, run

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-fake-LEAKCHECK-aaaa1111", "OPENAI_API_KEY": "sk-proj-fake-LEAKCHECK-bbbb2222",
        "MISTRAL_API_KEY": "LEAKCHECK-cccc3333", "TOGETHER_API_KEY": "LEAKCHECK-dddd4444",
        "HF_TOKEN": "hf_fakeLEAKCHECKeeee5555"}


@pytest.fixture(scope="module")
def hosted_project(tmp_path_factory):
    root = copy_project(tmp_path_factory.mktemp("hosted"))
    records, style = build(120, seed=1)
    records[5]["messages"][-1]["content"] += " FAULT:500"  # one failure, so an error message is written too
    write_records(root / "data/raw/corpus.jsonl", records)
    write_records(root / "data/raw/style.jsonl", style)
    with MockFineTuneAPI(turnaround_s=0.2, job_s=0.5) as api:
        tiny = {"base": {"oracle": {"provider": "anthropic", "model": "claude-test", "base_url": api.url,
                                    "batch_poll_s": 0.05},
                         "generator": {"provider": "openai_compat", "model": "qwen-test", "base_url": api.url + "/v1",
                                       "temperature": 0.9},
                         "prices": {"claude-test": {"input": 3.0, "output": 15.0},
                                    "qwen-test": {"input": 0.2, "output": 0.2}}},
                "calibrate": {"n_positive": 4, "n_negative": 4, "n_edge": 2},
                "validate": {"n_positive": 4, "n_negative": 4, "n_edge": 2},
                "detect_templates": {"min_count": 5, "max_templates": 3},
                "label": {"proceed_on_fail": True, "max_retries": 1, "batch": True},
                "train_chat": {"backend": "openai", "batch_size": 8, "max_examples": 0,
                               "hosted": {"model": "gpt-4.1-mini-2025-04-14", "base_url": api.url + "/v1",
                                          "poll_s": 0.05}}}
        params = merge(yaml.safe_load((ROOT / "params.yaml").read_text()), tiny)
        (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        for cmd in (["git", "init", "-q"], ["git", "add", "-A"],
                    ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init"]):
            run(cmd, root)
        env = {**KEYS, "HF_HUB_OFFLINE": "0"}
        plan_before = json.loads(run(["python", "-m", "distillery.pipeline.plan", "--json"], root, env=env).stdout)
        requests_after_plan = api.requests
        repro = run(["dvc", "repro", "label"], root, env=env)
        plan_after = json.loads(run(["python", "-m", "distillery.pipeline.plan", "--json"], root, env=env).stdout)
        label_metrics = json.loads((root / "metrics/label.json").read_text())
        chat = run(["dvc", "repro", "evaluate_chat"], root, env=env)  # the chat student trained by the vendor
        generated = json.loads((root / "metrics/generate.json").read_text())["accepted"]
        yield {"root": root, "logs": repro.stdout + repro.stderr + chat.stdout + chat.stderr,
               "ft": (api.ft_uploads, api.jobs_created, set(api.ft_names)), "plan_before": plan_before,
               "plan_after": plan_after, "requests_after_plan": requests_after_plan, "label": label_metrics,
               "generated": generated,
               "label_details": json.loads((root / "reports/details/label.json").read_text()), "submitted": dict(api.submitted), "batches_created": api.batches_created}


def test_no_key_is_written_anywhere(hosted_project):
    root = hosted_project["root"]
    label, generated = hosted_project["label"], hosted_project["generated"]
    assert label["labeled"] + label["failures"] == 120 + generated  # your records, then generate's
    assert hosted_project["label"]["failures"] == 1
    scanned = 0
    for path in root.rglob("*"):
        if path.is_file() and ".git" not in path.parts:
            data = path.read_bytes()
            scanned += 1
            for name, key in KEYS.items():
                assert key.encode() not in data, f"{name} found in {path.relative_to(root)}"
    for name in (".distillery/cache.sqlite", "dvc.lock", "metrics/label.json", "data/labeled/failures.jsonl",
                 ".distillery/journal/label.jsonl", ".distillery/remote/label.jsonl"):
        assert (root / name).exists(), name  # the places a key could leak to were all scanned
    assert scanned > 20
    for key in KEYS.values():
        assert key not in hosted_project["logs"]


def test_plan_estimates_the_next_repro_without_calling_anything(hosted_project):
    before, after = hosted_project["plan_before"], hosted_project["plan_after"]
    assert hosted_project["requests_after_plan"] == 0
    assert before["stages_to_run"][:6] == ["generate", "calibrate", "validate", "detect_templates", "regenerate", "label"]
    by_stage = {p["stage"]: p for p in before["llm_stages"]}
    # generate's plan: every brief and conversation step of the 12 planned scenarios, before anything exists
    assert by_stage["generate"]["records"] == 12 and by_stage["generate"]["calls"] >= 12 * 3
    assert by_stage["calibrate"]["corpus"] == "data/raw/corpus.jsonl"  # generate has not run: its input
    assert by_stage["label"]["calls"] == 120 and by_stage["label"]["corpus"] == "data/raw/corpus.jsonl"
    assert by_stage["calibrate"]["calls"] == 10 and by_stage["calibrate"]["provider"] == "anthropic/claude-test"
    assert by_stage["regenerate"]["flagged_known"] is False and by_stage["regenerate"]["calls"] == 120
    assert before["total"]["cost_usd_max"] > 0
    # label is batched: its cost is the batch price, shown beside the live one (base.batch_discount 0.5)
    label = by_stage["label"]
    assert label["batch"] is True and label["cost_usd_max"] == label["cost_usd_max_batch"] > 0
    assert label["cost_usd_max_batch"] == pytest.approx(label["cost_usd_max_live"] / 2, abs=1e-3)
    assert by_stage["calibrate"]["batch"] is False    # After `dvc repro label`, the students are left: only evaluate_chat's judge calls an LLM, and its calls
    # are planned once split has written the test conversations (the plan says so rather than guess).
    assert after["stages_to_run"] == ["split", "train", "evaluate", "train_chat", "evaluate_chat"]
    hosted, judge = after["llm_stages"]
    assert judge["stage"] == "evaluate_chat" and judge["calls"] == 0 and "split has run" in judge["note"]
    assert hosted["stage"] == "train_chat" and "split has run" in hosted["note"]


def test_dvc_repro_trains_the_chat_student_at_the_vendor_and_judges_it_against_its_base(hosted_project):
    root = hosted_project["root"]
    uploads, jobs, names = hosted_project["ft"]
    hosted = json.loads((root / "models/chat/hosted.json").read_text())
    assert (uploads, jobs) == (1, 1) and names == {hosted["fine_tuned_model"]}
    assert hosted["base_model"] == "gpt-4.1-mini-2025-04-14" and hosted["trained_tokens"] > 0
    details = json.loads((root / "reports/details/evaluate_chat.json").read_text())
    assert details["answer_calls"]["student"]["model"] == hosted["fine_tuned_model"]
    assert details["answer_calls"]["student"]["calls"] == details["answer_calls"]["base"]["calls"] > 0
    answers = [json.loads(ln) for ln in (root / "data/chat_eval/answers.jsonl").read_text().splitlines()]
    different = sum(a["student"] != a["base"] for a in answers)  # two models (a reply from a tool result is alike)
    assert answers and different >= 1
    assert details["judgements"] > details["identical_answers"] and details["verdict"] in ("DEPLOY", "REVIEW", "FAIL")
    train = json.loads((root / "metrics/train_chat.json").read_text())
    assert train["backend"] == "openai" and train["train_loss"] < json.loads(
        (root / "reports/details/train_chat.json").read_text())["first_loss"]


def test_label_ran_in_batches_each_request_submitted_once_the_failing_one_recorded(hosted_project):
    label = hosted_project["label_details"]
    assert label["batches"] == hosted_project["batches_created"] == 2  # one, then the errored (max_retries 1)
    times = hosted_project["submitted"]
    assert sorted(set(times.values())) == [1, 2] and list(times.values()).count(2) == 1  # only the failing one again
    failures = [json.loads(ln) for ln in (hosted_project["root"] / "data/labeled/failures.jsonl").read_text().splitlines()]
    assert len(failures) == 1 and "no result after 2 batches" in failures[0]["error"] and "errored" in failures[0]["error"]


def test_plan_needs_no_key_and_says_which_one_the_run_would_need(hosted_project):
    root = hosted_project["root"]
    params = yaml.safe_load((root / "params.yaml").read_text())
    params["calibrate"]["seed"] = 99  # calibrate, validate and label would run again
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = run(["python", "-m", "distillery.pipeline.plan"], root, env={"ANTHROPIC_API_KEY": "", "OPENAI_API_KEY": ""})
    assert "Traceback" not in out.stderr
    assert "note: calibrate: provider 'anthropic' needs an API key: set ANTHROPIC_API_KEY" in out.stdout


def test_a_dry_run_treats_what_the_next_repro_rewrites_as_absent(tmp_path, monkeypatch):
    from distillery.engine.job import fresh

    old = tmp_path / "sample.jsonl"
    old.write_text("{}\n")
    assert fresh(old)
    monkeypatch.setenv("DISTILLERY_PLAN_STALE", f"{tmp_path / 'other'}:{old}")
    assert not fresh(old)
