"""The label stage as a user runs it, on hosted providers (real SDKs, loopback servers): metrics that
match the files, kill -9 and resume, the budget stop, and the plan."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

from distillery.testing.mock_api import MockAPI
from distillery.records import load_records, read_jsonl, write_records
from tests.conftest import FILTER, ROOT, conversation, params_file

KEY = "sk-ant-fake-DO-NOT-LEAK-7f3a"


def setup(tmp_path, api, records, **label):
    oracle = {"provider": "anthropic", "model": "claude-test", "base_url": api.url, "timeout_s": 5,
              "concurrency": 4}
    params = {"base": {"oracle": oracle, "state_dir": str(tmp_path / "state"),
                       "prices": {"claude-test": {"input": 3.0, "output": 15.0}}},
              "filter": FILTER, "label": {"max_retries": 2, **label}}
    params_file(tmp_path / "params.yaml", params)
    (tmp_path / "gate.json").write_text(json.dumps({"verdict": "PASS", "reasons": []}))
    write_records(tmp_path / "corpus.jsonl", records)


def label_cmd(tmp_path):
    return [sys.executable, str(ROOT / "stages" / "label.py"), "--params", str(tmp_path / "params.yaml"),
            "--corpus", str(tmp_path / "corpus.jsonl"), "--gate", str(tmp_path / "gate.json"),
            "--prompt", str(ROOT / "prompts" / "oracle.md"), "--labeled", str(tmp_path / "out" / "labeled.jsonl"),
            "--failures", str(tmp_path / "out" / "failures.jsonl"), "--metrics", str(tmp_path / "headline.json"),
            "--details", str(tmp_path / "label.json")]


ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ANTHROPIC_API_KEY": KEY}


def test_metrics_match_the_labeled_and_failure_files(tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(8)]
    records += [conversation("torn", "FAULT:truncated"), conversation("down", "FAULT:500"),
                conversation("invalid", "FAULT:missing_dim"), conversation("busy", "FAULT:529x1")]
    with MockAPI(retry_after_s=0.1) as api:
        setup(tmp_path, api, records, max_failure_rate=0.5)  # three of twelve fail on purpose
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    metrics = json.loads((tmp_path / "label.json").read_text())
    labeled = load_records(tmp_path / "out" / "labeled.jsonl")
    failures = [json.loads(ln) for ln in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    assert len(labeled) == metrics["labeled"] == 9 and len(failures) == metrics["failures"] == 3
    assert metrics["failure_reasons"] == dict(Counter(f["stage_reason"] for f in failures)) == \
        {"call_failed": 2, "parse_failed": 1}
    assert metrics["call_failures"] == 2
    assert metrics["by_provider"]["anthropic/claude-test"]["calls"] == metrics["calls"]
    expected = (metrics["input_tokens"] * 3.0 + metrics["output_tokens"] * 15.0) / 1e6
    assert abs(metrics["cost_usd"] - expected) < 1e-6 and metrics["cost_usd"] > 0


def test_kill_9_mid_label_then_rerun_loses_no_row_and_repays_only_what_was_in_flight(tmp_path):
    records = [conversation(str(i), f"Answer number {i}.") for i in range(40)]
    with MockAPI(latency_s=0.1) as api:
        setup(tmp_path, api, records)
        proc = subprocess.Popen(label_cmd(tmp_path), env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        journal = tmp_path / "state" / "journal" / "label.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < 8):
            time.sleep(0.02)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done_before = len(journal.read_text().splitlines())
        assert 8 <= done_before < 40 and not (tmp_path / "out" / "labeled.jsonl").exists()
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        api.wait_idle()
        prompts = Counter(json.dumps(json.loads(b)["messages"]) for b in api.bodies)
    labeled = load_records(tmp_path / "out" / "labeled.jsonl")
    assert [r["id"] for r in labeled] == [r["id"] for r in records]  # no row lost, corpus order
    metrics = json.loads((tmp_path / "label.json").read_text())
    assert metrics["journal_hits"] + metrics["cache_hits"] + metrics["calls"] == 40
    # A prompt is sent twice only if its answer was on the wire when the process died (4 in flight).
    assert len(prompts) == 40 and sum(n - 1 for n in prompts.values()) <= 4


def test_budget_stops_with_exit_3_and_a_raised_budget_resumes(tmp_path):
    records = [conversation(str(i), f"Answer number {i}.") for i in range(12)]
    with MockAPI() as api:
        setup(tmp_path, api, records, budget_usd=0.01)
        first = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
        paid = api.requests
        assert first.returncode == 3, first.stderr
        assert "budget of $0.01 reached" in first.stdout and "journaled" in first.stdout
        assert 0 < paid < 12
        plan = subprocess.run(label_cmd(tmp_path) + ["--dry-run"], env=ENV, capture_output=True, text=True)
        estimate = json.loads(plan.stdout.split("PLAN ", 1)[1])
        assert (estimate["journal_hits"], estimate["calls"]) == (paid, 12 - paid) and estimate["cost_usd_max"] > 0
        assert api.requests == paid  # the dry run called nothing
        setup(tmp_path, api, records, budget_usd=1.0)
        second = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
    assert second.returncode == 0, second.stderr
    assert api.requests == 12 and len(load_records(tmp_path / "out" / "labeled.jsonl")) == 12


def test_a_rejected_key_stops_the_stage_at_once_naming_the_variable(tmp_path):
    records = [conversation(str(i), f"Answer {i}. FAULT:401") for i in range(40)]
    with MockAPI() as api:
        setup(tmp_path, api, records)
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
        paid = api.requests
    assert out.returncode == 2 and not (tmp_path / "out" / "labeled.jsonl").exists()
    assert "HTTP 401" in out.stderr and "Incorrect API key provided" in out.stderr  # the whole reason
    assert "ANTHROPIC_API_KEY" in out.stderr and api.url in out.stderr
    assert paid <= 4 + 1  # the calls already on the wire (concurrency 4), not 40


def test_an_unknown_model_stops_the_stage(tmp_path):
    records = [conversation(str(i), f"Answer {i}. FAULT:404") for i in range(20)]
    with MockAPI() as api:
        setup(tmp_path, api, records)
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
    assert out.returncode == 2 and "HTTP 404" in out.stderr and "model name or base_url is wrong" in out.stderr


def test_a_dead_server_stops_the_stage_after_a_few_calls_that_all_failed_alike(tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(40)]
    with MockAPI() as api:
        setup(tmp_path, api, records, max_retries=0)
    # The server is gone now: every connection is refused.
    out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
    assert out.returncode == 2 and "the first 5 calls all failed the same way" in out.stderr
    # The reason under the SDK's "Connection error.", the URL, and what to check (not the key: nothing answered).
    assert "Connection refused" in out.stderr and "http://127.0.0.1:" in out.stderr and "server running" in out.stderr


def test_failures_over_the_threshold_exit_4_and_the_next_run_retries_only_them(tmp_path):
    # Short answers succeed; the long ones fail on every try (500): a fifth of the corpus.
    records = [conversation(str(i), f"Fine {i}.") for i in range(16)]
    records += [conversation(f"bad{i}", f"This much longer answer fails every time it is asked. FAULT:500 {i}")
                for i in range(4)]
    with MockAPI() as api:
        setup(tmp_path, api, records, max_retries=0, max_failure_rate=0.1)
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
        assert out.returncode == 4 and "4 of 20 records failed" in out.stderr
        assert len(list(read_jsonl(tmp_path / "out" / "failures.jsonl"))) == 4  # outputs are kept
        before = api.requests
        setup(tmp_path, api, records[:16] + [conversation(f"bad{i}", f"Now fine {i}.") for i in range(4)],
              max_retries=0, max_failure_rate=0.1)
        again = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
        assert again.returncode == 0, again.stderr
        assert api.requests - before == 4  # the 16 that succeeded come from the journal


def test_failures_under_the_threshold_name_the_command_that_retries_them(tmp_path):
    records = [conversation(str(i), f"Fine {i}.") for i in range(19)]
    records.append(conversation("bad", "This much longer answer fails every time it is asked. FAULT:500"))
    with MockAPI() as api:
        setup(tmp_path, api, records, max_retries=0, max_failure_rate=0.1)
        out = subprocess.run(label_cmd(tmp_path), env=ENV, capture_output=True, text=True)
    assert out.returncode == 0 and "1 of 20 records failed" in out.stdout
    assert "dvc repro -f -s label" in out.stdout
