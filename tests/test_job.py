"""The resumable job helper, through a toy stage that is only a prompt builder and a parser
(tests/toy_stage.py), run as a real process against a loopback OpenAI-style server."""
import json
import os
import subprocess
import sys

from distillery.engine.job import Accept, Failure, Job, JobRunner, Reject
from distillery.engine.journal import Journal
from distillery.engine.requests import CompleteRequest
from distillery.records import load_records, write_records
from distillery.testing.mock_api import MockAPI
from tests.conftest import ROOT, kill_after_journal_lines

N = 30


def toy(tmp_path, api, *extra):
    write_records(tmp_path / "in.jsonl", [{"id": f"r{i}", "text": f"record number {i}"} for i in range(N)])
    cmd = [sys.executable, str(ROOT / "tests" / "toy_stage.py"), "--records", str(tmp_path / "in.jsonl"),
           "--out", str(tmp_path / "out.jsonl"), "--state", str(tmp_path / "state"), "--base-url", api.url + "/v1",
           *extra]
    return cmd, {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}:{ROOT}", "OPENAI_API_KEY": "fake-key"}


def test_kill_9_then_rerun_loses_nothing_and_repays_only_what_was_in_flight(tmp_path):
    with MockAPI(latency_s=0.15) as api:
        cmd, env = toy(tmp_path, api)
        journal = tmp_path / "state" / "journal.jsonl"
        kill_after_journal_lines(cmd, env, journal, 8)
        done_before = len(Journal(journal).load())
        assert 8 <= done_before < N
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        out = load_records(tmp_path / "out.jsonl")
        assert [r["id"] for r in out] == [f"r{i}" for i in range(N)] and all(r["shout"].isupper() for r in out)
        # Rows journaled before the kill are not asked again; only calls on the wire at the kill can be.
        assert api.requests <= N + 2  # concurrency 2: at most two calls were lost in flight


def test_dry_run_plans_from_the_requests_it_would_send_and_counts_the_journal(tmp_path):
    with MockAPI() as api:
        cmd, env = toy(tmp_path, api)
        plan = lambda: json.loads(subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True,  # noqa: E731
                                                 check=True).stdout.split("PLAN ", 1)[1])
        before = plan()
        assert (before["calls"], before["calls_max"], before["journal_hits"]) == (N, 2 * N, 0)
        assert before["cost_usd_max"] > 0 and api.requests == 0
        subprocess.run(cmd, env=env, check=True, capture_output=True)
        after = plan()
        assert (after["calls"], after["journal_hits"]) == (0, N) and api.requests == N


def test_budget_stops_with_exit_3_and_a_raised_budget_finishes_without_paying_twice(tmp_path):
    with MockAPI() as api:
        cmd, env = toy(tmp_path, api)
        stopped = subprocess.run(cmd + ["--budget", "1.0"], env=env, capture_output=True, text=True)
        assert stopped.returncode == 3 and "budget of $1 reached" in stopped.stdout
        paid = api.requests
        assert 0 < paid < N and len(Journal(tmp_path / "state" / "journal.jsonl").load()) == paid
        subprocess.run(cmd + ["--budget", "100"], env=env, check=True, capture_output=True)
        assert len(load_records(tmp_path / "out.jsonl")) == N and api.requests == N


class Picky(Job):
    """Rejects the first reply of every record, so each needs a second attempt (a new sample)."""
    name, max_attempts = "picky", 2

    def key(self, record):
        return {"record": record}

    def request(self, record, attempt):
        return CompleteRequest([{"role": "user", "content": record["text"]}], 0.0, 10, attempt)

    def parse(self, record, reply, attempt):
        return Accept({"text": reply.text, "attempt": attempt}) if attempt == 2 else Reject("first", raw=reply.text)


def test_a_rejected_reply_is_asked_again_then_the_job_decides(make_engine):
    records = [{"id": "a", "text": "x"}, {"id": "b", "text": "y"}]
    result = JobRunner(Picky(), make_engine(), progress=False).run(records)
    assert {k: v["attempt"] for k, v in result.values.items()} == {"a": 2, "b": 2}
    picky = Picky()
    picky.max_attempts = 1
    result = JobRunner(picky, make_engine(), progress=False).run(records)
    assert result.values == {} and [(f.id, f.reason, f.attempts) for f in result.failures] == [("a", "first", 1),
                                                                                              ("b", "first", 1)]
    assert all(isinstance(f, Failure) and f.raw for f in result.failures)


def test_failures_are_not_journaled_so_the_next_run_tries_them_again(make_engine, tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    picky = Picky()
    picky.max_attempts = 1
    JobRunner(picky, make_engine(), journal, progress=False).run([{"id": "a", "text": "x"}])
    assert journal.load() == {}


def test_a_journal_line_torn_by_a_kill_does_not_swallow_the_next_result(tmp_path):
    from distillery.engine.journal import Journal

    journal = Journal(tmp_path / "label.jsonl")
    journal.append("a", {"v": 1})
    with journal.path.open("a") as fh:
        fh.write('{"key": "b", "val')  # the process died mid-write
    journal.append_many([("c", {"v": 3})])
    assert journal.load() == {"a": {"v": 1}, "c": {"v": 3}}
