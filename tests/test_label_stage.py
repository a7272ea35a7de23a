"""stages/label.py as a user runs it: the validate gate, and records that arrive already labeled."""
import json
import os
import subprocess
import sys

import yaml

from distillery.records import load_records, write_records
from tests.conftest import FILTER, ROOT, conversation


def setup(tmp_path, verdict, proceed, records):
    params = {"base": {"oracle": {"provider": "fake", "model": "fake"}, "state_dir": str(tmp_path / "state")},
              "filter": FILTER, "label": {"proceed_on_fail": proceed}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    (tmp_path / "gate.json").write_text(json.dumps({"verdict": verdict, "reasons": ["spread 0.2 ≤ 1.0"]}))
    write_records(tmp_path / "corpus.jsonl", records)


def label(tmp_path):
    cmd = [sys.executable, str(ROOT / "stages" / "label.py"), "--params", str(tmp_path / "params.yaml"),
           "--corpus", str(tmp_path / "corpus.jsonl"), "--gate", str(tmp_path / "gate.json"),
           "--prompt", str(ROOT / "prompts" / "oracle.md"), "--labeled", str(tmp_path / "out" / "labeled.jsonl"),
           "--failures", str(tmp_path / "out" / "failures.jsonl"), "--metrics", str(tmp_path / "headline.json"),
           "--details", str(tmp_path / "label.json")]
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    return subprocess.run(cmd, capture_output=True, text=True, env=env)


def test_label_refuses_on_a_failed_validation(tmp_path):
    setup(tmp_path, "FAIL", False, [conversation("a", "Sunny.")])
    out = label(tmp_path)
    assert out.returncode != 0
    assert "refusing to label: validation verdict is FAIL (spread 0.2 ≤ 1.0)" in out.stderr
    assert "label.proceed_on_fail" in out.stderr
    assert not (tmp_path / "out" / "labeled.jsonl").exists()


def test_proceed_on_fail_labels_anyway_with_a_warning(tmp_path):
    setup(tmp_path, "FAIL", True, [conversation("a", "Sunny.")])
    out = label(tmp_path)
    assert out.returncode == 0, out.stderr
    assert "WARNING: validation verdict is FAIL" in out.stdout


def test_existing_labels_are_kept_and_only_the_rest_is_labeled(tmp_path):
    pre = conversation("pre", "Labeled elsewhere.")
    pre["labels"] = {"relevance": 9, "groundedness": 8, "style": 1}
    setup(tmp_path, "PASS", False, [conversation("a", "Sunny."), pre])
    assert label(tmp_path).returncode == 0
    labeled = {r["id"]: r for r in load_records(tmp_path / "out" / "labeled.jsonl")}
    assert labeled["pre"]["labels"] == {"relevance": 9.0, "groundedness": 8.0, "style": 1.0}
    assert labeled["pre"]["tier"] == "high" and labeled["pre"]["oracle"] == {"provider": "existing"}
    metrics = json.loads((tmp_path / "label.json").read_text())
    assert (metrics["kept_existing_labels"], metrics["newly_labeled"], metrics["calls"]) == (1, 1, 1)


def test_failed_calls_are_listed_and_counted_not_dropped(tmp_path, monkeypatch):
    setup(tmp_path, "PASS", False, [conversation("a", "Sunny."), conversation("boom", "POISON answer.")])
    monkeypatch.setenv("DISTILLERY_FAKE_FAIL_ON", "POISON")
    assert label(tmp_path).returncode == 4  # one of two failed: over label.max_failure_rate, so repro retries
    failures = load_records_plain(tmp_path / "out" / "failures.jsonl")
    assert [f["id"] for f in failures] == ["boom"] and failures[0]["stage_reason"] == "call_failed"
    metrics = json.loads((tmp_path / "label.json").read_text())
    assert (metrics["labeled"], metrics["failures"], metrics["records"]) == (1, 1, 2)


def load_records_plain(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_split_train_and_evaluate_name_the_stage_that_produced_nothing(tmp_path):
    from tests.conftest import params_file

    params_file(tmp_path / "params.yaml", {})
    write_records(tmp_path / "labeled.jsonl", [])
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    split = subprocess.run([sys.executable, str(ROOT / "stages" / "split.py"), "--params", str(tmp_path / "params.yaml"),
                            "--labeled", str(tmp_path / "labeled.jsonl"), "--out-dir", str(tmp_path / "splits"),
                            "--metrics", str(tmp_path / "split.json"), "--details", str(tmp_path / "d.json")],
                           capture_output=True, text=True, env=env)
    assert split.returncode != 0 and "label produced too little" in split.stderr
    (tmp_path / "splits").mkdir()
    for name in ("train", "val", "test"):
        write_records(tmp_path / "splits" / f"{name}.jsonl", [])
    train = subprocess.run([sys.executable, str(ROOT / "stages" / "train.py"), "--params", str(tmp_path / "params.yaml"),
                            "--splits", str(tmp_path / "splits"), "--model-dir", str(tmp_path / "m"),
                            "--metrics", str(tmp_path / "t.json"), "--details", str(tmp_path / "d.json"),
                            "--live-dir", str(tmp_path / "live"), "--figure", str(tmp_path / "f.svg")], capture_output=True, text=True, env=env)
    assert train.returncode != 0 and "split produced too little" in train.stderr and "Traceback" not in train.stderr


def test_a_skipped_oracle_check_lets_label_go_on_and_says_so(tmp_path):
    setup(tmp_path, "SKIPPED", False, [conversation("a", "Sunny.")])
    out = label(tmp_path)
    assert out.returncode == 0 and "not checked (calibrate.skip: true)" in out.stdout
