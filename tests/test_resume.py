"""A regenerate run killed with SIGKILL mid-way resumes where it stopped: no row lost, nothing redone."""
import json
import os
import subprocess
import sys

from distillery.records import load_records, subject_text, write_records
from tests.conftest import ROOT, conversation, kill_after_journal_lines, params_file

STOCK = "I hope this helps! Let me know if you need anything else."


def test_killed_regenerate_resumes_from_its_journal(tmp_path):
    state = tmp_path / "state"
    params = {"base": {"generator": {"provider": "fake", "model": "fake"}, "state_dir": str(state)},
              "regenerate": {"batch_size": 1, "max_attempts": 1, "check_facts": False}}  # the fake drops facts
    params_file(tmp_path / "params.yaml", params)
    records = [conversation(f"r{i}", f"Answer {i}. {STOCK}") for i in range(12)]
    write_records(tmp_path / "corpus.jsonl", records)
    write_records(tmp_path / "flagged.jsonl", [{"id": r["id"], "patterns": ["phrase-0"]} for r in records])
    (tmp_path / "patterns.json").write_text(json.dumps(
        [{"id": "phrase-0", "kind": "known_phrase", "text": STOCK, "count": 12}]))
    write_records(tmp_path / "style.jsonl", [{"persona": "neutral", "text": "Short and plain."}])
    cmd = [sys.executable, str(ROOT / "stages" / "regenerate.py"), "--params", str(tmp_path / "params.yaml"),
           "--corpus", str(tmp_path / "corpus.jsonl"), "--flagged", str(tmp_path / "flagged.jsonl"),
           "--patterns", str(tmp_path / "patterns.json"), "--style", str(tmp_path / "style.jsonl"),
           "--prompt", str(ROOT / "prompts" / "regenerate.md"), "--out", str(tmp_path / "out.jsonl"),
           "--metrics", str(tmp_path / "headline.json"),
           "--details", str(tmp_path / "metrics.json"), "--report", str(tmp_path / "report.md")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "DISTILLERY_FAKE_DELAY": "0.3"}

    journal = state / "journal" / "regenerate.jsonl"
    kill_after_journal_lines(cmd, env, journal, 4, poll_s=0.05)
    done_before = len(journal.read_text().splitlines())
    assert 4 <= done_before < 12 and not (tmp_path / "out.jsonl").exists()

    env["DISTILLERY_FAKE_DELAY"] = "0"
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    out = load_records(tmp_path / "out.jsonl")
    assert [r["id"] for r in out] == [r["id"] for r in records]  # no row lost
    assert all(STOCK not in subject_text(r) for r in out)
    assert metrics["journal_hits"] == done_before  # nothing finished before the kill was redone…
    # …and what the killed run paid for but had not journaled came from the cache, not the model.
    assert metrics["calls"] + metrics["cache_hits"] == 12 - done_before
    assert metrics["rewritten"] == 12
