"""Vendor batches, as a user runs them: the label stage with `batch: true` against loopback servers in each
vendor's batch wire format, driven by the real SDKs. Every record ends labeled or in failures with a reason;
the server's own counts show that no request is submitted twice; kill -9 at five points of the
submit / poll / collect cycle, then a rerun, loses nothing and pays nothing twice."""
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from distillery.records import load_records, write_records
from distillery.testing.mock_batches import MockBatchAPI
from tests.conftest import FILTER, ROOT, conversation, params_file, restart_when

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-batch-SECRET1", "OPENAI_API_KEY": "sk-batch-SECRET2",
        "TOGETHER_API_KEY": "together-batch-SECRET3", "MISTRAL_API_KEY": "mistral-batch-SECRET4"}
ENV = {**os.environ, "PYTHONPATH": str(ROOT / "src"), **KEYS}
VENDORS = {"anthropic": ("anthropic", ""), "openai": ("openai_compat", "/v1"), "together": ("together", ""),
           "mistral": ("mistral", "")}


def setup(tmp_path, api, vendor, records, batch=True, **label):
    provider, suffix = VENDORS[vendor]
    tmp_path.mkdir(parents=True, exist_ok=True)
    oracle = {"provider": provider, "model": f"{vendor}-test", "base_url": api.url + suffix, "timeout_s": 5,
              "batch": batch, "batch_poll_s": 0.05}
    params = {"base": {"oracle": oracle, "state_dir": str(tmp_path / "state"),
                       "prices": {f"{vendor}-test": {"input": 3.0, "output": 15.0}}},
              "filter": FILTER, "label": {"max_retries": 2, **label}}
    params_file(tmp_path / "params.yaml", params)
    (tmp_path / "gate.json").write_text(json.dumps({"verdict": "PASS", "reasons": []}))
    write_records(tmp_path / "corpus.jsonl", records)


def label(tmp_path, extra_env=None):
    cmd = [sys.executable, str(ROOT / "stages" / "label.py"), "--params", str(tmp_path / "params.yaml"),
           "--corpus", str(tmp_path / "corpus.jsonl"), "--gate", str(tmp_path / "gate.json"),
           "--prompt", str(ROOT / "prompts" / "oracle.md"), "--labeled", str(tmp_path / "out" / "labeled.jsonl"),
           "--failures", str(tmp_path / "out" / "failures.jsonl"), "--metrics", str(tmp_path / "headline.json"),
           "--details", str(tmp_path / "label.json")]
    return subprocess.run(cmd, env={**ENV, **(extra_env or {})}, capture_output=True, text=True, timeout=120)


def outputs(tmp_path):
    labeled = load_records(tmp_path / "out" / "labeled.jsonl")
    failures = [json.loads(ln) for ln in (tmp_path / "out" / "failures.jsonl").read_text().splitlines()]
    return labeled, failures, json.loads((tmp_path / "label.json").read_text())


def records(n, prefix="Answer"):
    return [conversation(str(i), f"{prefix} number {i}.") for i in range(n)]


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_label_in_batches_writes_what_live_would_and_switching_batch_off_pays_nothing(tmp_path, vendor):
    corpus = records(6)
    with MockBatchAPI(turnaround_s=0.2) as api:
        setup(tmp_path / "live", api, vendor, corpus, batch=False)
        assert label(tmp_path / "live").returncode == 0
        setup(tmp_path, api, vendor, corpus)
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 1 and set(api.submitted.values()) == {1} and len(api.submitted) == 6
        labeled, failures, metrics = outputs(tmp_path)
        live, _, _ = outputs(tmp_path / "live")
        assert [r["labels"] for r in labeled] == [r["labels"] for r in live] and not failures
        assert metrics["batches"] == 1 and metrics["calls"] == 6
        expected = (metrics["input_tokens"] * 1.5 + metrics["output_tokens"] * 7.5) / 1e6  # the batch price
        assert metrics["cost_usd"] == pytest.approx(expected, abs=1e-6) and metrics["cost_usd"] > 0
        # The same requests live, from a fresh journal: every answer is in the cache under the live key.
        (tmp_path / "state" / "journal" / "label.jsonl").unlink()
        setup(tmp_path, api, vendor, corpus, batch=False)
        live_requests = api.requests
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.requests == live_requests and api.batches_created == 1
        assert outputs(tmp_path)[2]["cache_hits"] == 6
        # And batch on again after completion: zero calls, zero submissions.
        setup(tmp_path, api, vendor, corpus)
        assert label(tmp_path).returncode == 0 and api.batches_created == 1
    assert not any(key in body for body in api.bodies for key in KEYS.values())


def test_errored_requests_are_resubmitted_alone_and_a_request_that_always_errors_is_a_failure(tmp_path):
    corpus = records(4) + [conversation("flaky", "FAULT:batch_errorx1 once"),
                           conversation("broken", "FAULT:batch_error always")]
    with MockBatchAPI(turnaround_s=0.1) as api:
        setup(tmp_path, api, "openai", corpus, max_failure_rate=0.5)
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        submitted = dict(api.submitted)
    labeled, failures, metrics = outputs(tmp_path)
    assert {r["id"] for r in labeled} == {"0", "1", "2", "3", "flaky"}
    assert [(f["id"], f["stage_reason"]) for f in failures] == [("broken", "call_failed")]
    assert "errored" in failures[0]["error"] and "3 batches" in failures[0]["error"]
    assert sorted(Counter(submitted.values()).items()) == [(1, 4), (2, 1), (3, 1)]  # only the errored went again
    assert metrics["batches"] == 3


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
def test_an_expired_batch_keeps_its_finished_results_and_only_the_rest_go_again(tmp_path, vendor):
    corpus = records(8)
    with MockBatchAPI(turnaround_s=0.1) as api:
        api.expire_next(keep=3)
        setup(tmp_path, api, vendor, corpus)
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert sorted(Counter(api.submitted.values()).items()) == [(1, 3), (2, 5)] and api.batches_created == 2
    labeled, failures, _ = outputs(tmp_path)
    assert len(labeled) == 8 and not failures


def test_a_cut_off_results_download_is_fetched_again_without_resubmitting(tmp_path):
    with MockBatchAPI(turnaround_s=0.1) as api:
        api.cut_next_download()
        setup(tmp_path, api, "anthropic", records(6))
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 1 and set(api.submitted.values()) == {1} and api.downloads >= 2
    assert len(outputs(tmp_path)[0]) == 6


def test_a_reply_missing_a_dimension_is_asked_again_in_the_next_batch_then_recorded_with_its_text(tmp_path):
    corpus = records(3) + [conversation("invalid", "FAULT:missing_dim")]
    with MockBatchAPI(turnaround_s=0.1) as api:
        setup(tmp_path, api, "mistral", corpus, max_failure_rate=0.5)
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 2  # the second: the rejected reply's new sample, alone
    _, failures, _ = outputs(tmp_path)
    assert [(f["id"], f["stage_reason"]) for f in failures] == [("invalid", "parse_failed")] and failures[0]["raw"]


def test_the_budget_caps_what_is_submitted(tmp_path):
    with MockBatchAPI(turnaround_s=0.1) as api:
        setup(tmp_path, api, "openai", records(10), budget_usd=0.01)  # each request reserves ~0.0016 at batch price
        out = label(tmp_path)
        assert out.returncode == 3, out.stdout + out.stderr
        assert 0 < len(api.submitted) < 10 and "budget" in out.stdout


def test_a_server_restart_between_submit_and_collect_is_ridden_out(tmp_path):
    with MockBatchAPI(turnaround_s=1.0) as api:
        setup(tmp_path, api, "openai", records(5))
        t = restart_when(api, lambda: api.batches_created > 0)
        out = label(tmp_path)
        t.join()
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 1 and set(api.submitted.values()) == {1}
    assert len(outputs(tmp_path)[0]) == 5


POINTS = ["intent", "created", "submitted", "collecting:2", "closed"]


@pytest.mark.slow
@pytest.mark.parametrize("vendor,point", [("openai", p) for p in POINTS]
                         + [(v, "created") for v in ("anthropic", "together", "mistral")])
def test_kill_9_anywhere_in_the_cycle_then_a_rerun_loses_nothing_and_pays_nothing_twice(tmp_path, vendor, point):
    corpus = records(6)
    with MockBatchAPI(turnaround_s=0.1) as api:
        setup(tmp_path, api, vendor, corpus)
        killed = label(tmp_path, {"DISTILLERY_CRASH_AT": point})
        assert killed.returncode == -9, killed.stderr
        assert not (tmp_path / "out" / "labeled.jsonl").exists()
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 1  # killed before create: made by the rerun; after: found, not made again
        assert set(api.submitted.values()) == {1} and len(api.submitted) == 6
    labeled, failures, metrics = outputs(tmp_path)
    assert [r["id"] for r in labeled] == [r["id"] for r in corpus] and not failures
    # each result counted once over both runs: what the killed run cached is a cache hit, not a call again
    assert metrics["calls"] + metrics["cache_hits"] + metrics["journal_hits"] == 6


def test_a_batch_the_vendor_lost_is_abandoned_and_its_requests_sent_again(tmp_path):
    with MockBatchAPI(turnaround_s=0.1) as api:
        setup(tmp_path, api, "openai", records(3))
        assert label(tmp_path, {"DISTILLERY_CRASH_AT": "submitted"}).returncode == -9
        api.batches.clear()  # the vendor no longer knows it: 404 on retrieve
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 2 and set(api.submitted.values()) == {2}
    assert len(outputs(tmp_path)[0]) == 3


def test_make_batches_lists_and_cancels(tmp_path):
    from distillery.engine.remote import Ledger

    with MockBatchAPI(turnaround_s=60) as api:
        api.cancel_s = 0.1
        setup(tmp_path, api, "openai", records(3))
        killed = label(tmp_path, {"DISTILLERY_CRASH_AT": "submitted"})
        assert killed.returncode == -9
        cmd = [sys.executable, "-m", "distillery.pipeline.batches", "--params", str(tmp_path / "params.yaml")]
        listed = subprocess.run(cmd, env=ENV, capture_output=True, text=True, cwd=tmp_path)
        assert listed.returncode == 0, listed.stderr
        batch_id = next(iter(api.batches))
        assert "label" in listed.stdout and batch_id in listed.stdout and "3 processing" in listed.stdout
        cancelled = subprocess.run(cmd + ["--cancel", "open"], env=ENV, capture_output=True, text=True, cwd=tmp_path)
        assert cancelled.returncode == 0 and batch_id in cancelled.stdout
        ledger = Ledger.for_stage(tmp_path / "state", "label")
        assert [j["id"] for j in ledger.open()] == [batch_id]
        # The next run collects the cancelled batch and sends what it never ran again, in a new batch.
        api.turnaround_s = 0.1
        out = label(tmp_path)
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 2 and not ledger.open() and max(api.submitted.values()) == 2
    assert len(outputs(tmp_path)[0]) == 3


@pytest.mark.parametrize("vendor", ["anthropic", "openai"])
def test_a_rejected_key_stops_at_the_first_batch_and_the_next_run_submits_once(tmp_path, vendor):
    with MockBatchAPI(key="the-right-key", turnaround_s=0.1) as api:
        setup(tmp_path, api, vendor, records(3))
        out = label(tmp_path)
        var = {"anthropic": "ANTHROPIC_API_KEY", "openai": "OPENAI_API_KEY"}[vendor]
        assert out.returncode == 2 and "401" in out.stderr and f"key is wrong or missing (the key comes from {var}" \
            in out.stderr, out.stderr
        assert api.batches_created == 0 and not any(v in out.stderr + out.stdout for v in KEYS.values())
        out = label(tmp_path, {var: "the-right-key"})
        assert out.returncode == 0, out.stderr
        assert api.batches_created == 1 and set(api.submitted.values()) == {1}


def test_a_ledger_line_torn_by_a_kill_does_not_swallow_the_next_event(tmp_path):
    from distillery.engine.remote import Ledger

    ledger = Ledger(tmp_path / "label.jsonl", "label")
    ledger.write("intent", "a", n=1)
    with ledger.path.open("a") as fh:
        fh.write('{"event": "submitted", "tag": "a", "i')  # the process died mid-write
    ledger.write("intent", "b", n=2)
    ledger.write("submitted", "b", id="batch_b")
    assert ledger.entries()["b"]["id"] == "batch_b" and "id" not in ledger.entries()["a"]
    assert [j["tag"] for j in ledger.open()] == ["a", "b"]
