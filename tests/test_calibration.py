import pytest

from distillery.labeling.calibration import assess, stratified_sample, verdict, wilson
from distillery.params import CalibrationThresholds, SampleParams
from tests.conftest import conversation


def corpus():
    return ([conversation(f"on{i}", "x", expect="on_topic") for i in range(30)]
            + [conversation(f"off{i}", "x", expect="off_topic") for i in range(30)]
            + [conversation(f"e{i}", "x", expect="edge") for i in range(12)]
            + [conversation(f"n{i}", "x") for i in range(20)])


def test_stratified_sample_counts_and_seed():
    cfg = SampleParams(n_positive=5, n_negative=4, n_edge=3, seed=1)
    sample = stratified_sample(corpus(), cfg)
    kinds = [r["expect"] for r in sample]
    assert (kinds.count("on_topic"), kinds.count("off_topic"), kinds.count("edge")) == (5, 4, 3)
    assert [r["id"] for r in stratified_sample(corpus(), cfg)] == [r["id"] for r in sample]


def test_validation_sample_is_disjoint_from_calibration():
    cal = stratified_sample(corpus(), SampleParams(10, 10, 5, seed=1))
    val = stratified_sample(corpus(), SampleParams(10, 10, 5, seed=2), exclude={r["id"] for r in cal})
    assert not {r["id"] for r in cal} & {r["id"] for r in val}


def test_too_few_hints_is_a_clear_error():
    with pytest.raises(ValueError, match=r"calibrate.n_positive is 40, but the corpus has \d+ records with expect='on_topic'"):
        stratified_sample(corpus(), SampleParams(40, 1, 1))
    with pytest.raises(ValueError, match=r"validate.n_positive is 40"):  # validate's errors name validate's keys
        stratified_sample(corpus(), SampleParams(40, 1, 1), section="validate")


def test_a_labeled_corpus_needs_no_hints_and_the_oracle_is_measured_against_its_labels(filt):
    from distillery.labeling.calibration import with_expect_from_labels

    records = []
    for i in range(20):
        r = conversation(f"r{i}", f"Answer {i}.")
        v = 8.0 if i % 2 else 1.0
        r["labels"] = {"relevance": v, "groundedness": v, "style": v}
        records.append(r)
    hinted = with_expect_from_labels(records, filt)
    assert {r["expect"] for r in hinted} == {"on_topic", "off_topic"} and all(r["expect_from"] == "labels" for r in hinted)
    sample = stratified_sample(hinted, SampleParams(4, 4, 2))  # no edge records: none asked for from labels
    assert len(sample) == 8
    # An oracle that agrees on the on-topic ones and is 3 points off on the others.
    oracle = [{"id": r["id"], "score": 8.0 if r["expect"] == "on_topic" else 4.0,
               "tier": "high" if r["expect"] == "on_topic" else "medium",
               "labels": {d: (8.0 if r["expect"] == "on_topic" else 4.0) for d in filt.dimensions}} for r in sample]
    m, report = assess("t", sample, oracle, [], filt, CalibrationThresholds())
    agree = m["agreement_with_labels"]
    assert agree["n"] == 8 and agree["mae"] == 1.5 and agree["tier_agreement"] == 0.5
    assert any("from your labels" in r for r in m["reasons"]) and m["verdict"] in ("REVIEW", "FAIL")


def labeled(rid, expect, score, spread=0):
    return {"id": rid, "expect": expect, "score": score, "tier": "x",
            "labels": {"relevance": score + spread, "groundedness": score, "style": score - spread}}


def test_verdict_pass_review_fail(filt):
    t = CalibrationThresholds()
    sample = [{"id": f"on{i}", "expect": "on_topic"} for i in range(10)] + \
             [{"id": f"off{i}", "expect": "off_topic"} for i in range(10)]

    def run(n_fp, n_fn):
        rows = [labeled(f"on{i}", "on_topic", 2.0 if i < n_fn else 8.0 + i * 0.1) for i in range(10)]
        rows += [labeled(f"off{i}", "off_topic", 6.0 if i < n_fp else 1.0 + i * 0.1) for i in range(10)]
        m, report = assess("t", sample, rows, [], filt, t)
        return m["verdict"], m, report

    assert run(0, 1)[0] == "PASS"
    assert run(1, 0)[0] == "REVIEW"  # 10% false positives: at the PASS limit
    status, m, report = run(3, 0)
    assert status == "FAIL" and m["false_positive_rate"] == 0.3
    assert "FAIL" in report and "off3" not in report and "off0" in report  # disagreements listed


def test_collapsed_oracle_fails_on_spread():
    m = {"false_positive_rate": 0, "false_negative_rate": 0, "spread": 0.2, "failure_rate": 0}
    status, reasons = verdict(m, CalibrationThresholds())
    assert status == "FAIL" and "spread" in reasons[0]


def test_drift_from_calibration_is_review():
    m = {"false_positive_rate": 0.05, "false_negative_rate": 0.05, "spread": 2, "failure_rate": 0,
         "drift": {"false_positive_rate": 0.0, "false_negative_rate": 0.15, "spread": 0.5}}
    status, reasons = verdict(m, CalibrationThresholds())
    assert status == "REVIEW" and "drifted" in reasons[0]


def test_wilson_interval():
    lo, hi = wilson(1, 10)
    assert lo == pytest.approx(0.0179, abs=1e-3) and hi == pytest.approx(0.4042, abs=1e-3)


def test_figures_that_rest_on_failed_calls_say_so_instead_of_blaming_the_prompt(filt):
    sample = [{"id": f"r{i}", "expect": "on_topic" if i % 2 else "off_topic"} for i in range(10)]
    labeled = [{"id": "r1", "score": 7.0, "tier": "high", "labels": {"relevance": 7, "groundedness": 7, "style": 7}}]
    failures = [{"id": f"r{i}", "stage_reason": "call_failed", "error": "HTTP 500"} for i in range(2, 10)]
    failures.append({"id": "r0", "stage_reason": "parse_failed", "error": "no JSON"})
    m, report = assess("t", sample, labeled, failures, filt, CalibrationThresholds())
    assert m["verdict"] == "FAIL" and m["failure_reasons"] == {"call_failed": 8, "parse_failed": 1}
    assert "rest on failed calls" in m["reasons"][0] and "call_failed 8" in m["reasons"][0]
    assert not any("scores everything alike" in r for r in m["reasons"])  # not a prompt problem
    assert "rest on failed calls" in report


def test_skipping_the_check_writes_a_skipped_verdict_and_calls_nothing(tmp_path):
    import json
    import os
    import subprocess
    import sys

    from distillery.records import write_records
    from tests.conftest import ROOT, params_file

    params_file(tmp_path / "params.yaml", {"calibrate": {"skip": True}, "base": {"state_dir": str(tmp_path / "s")}})
    write_records(tmp_path / "corpus.jsonl", [conversation("a", "Sunny.")])  # no hints: a sample would fail
    out = {n: tmp_path / n for n in ("sample.jsonl", "labeled.jsonl", "failures.jsonl", "report.md", "m.json", "d.json")}
    proc = subprocess.run([sys.executable, str(ROOT / "stages" / "calibrate.py"), "--params", str(tmp_path / "params.yaml"),
                           "--corpus", str(tmp_path / "corpus.jsonl"), "--prompt", str(ROOT / "prompts" / "oracle.md"),
                           "--sample", str(out["sample.jsonl"]), "--labeled", str(out["labeled.jsonl"]),
                           "--failures", str(out["failures.jsonl"]), "--report", str(out["report.md"]),
                           "--metrics", str(out["m.json"]), "--details", str(out["d.json"])], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")})
    assert proc.returncode == 0, proc.stderr
    assert json.loads(out["m.json"].read_text())["verdict"] == "SKIPPED"
    assert "SKIPPED" in out["report.md"].read_text() and not (tmp_path / "s").exists()  # no cache: no call
