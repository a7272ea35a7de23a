import numpy as np

from distillery.evaluation.regression import baseline_mae, deploy_verdict, error_metrics
from distillery.params import EvaluateThresholds

T = EvaluateThresholds()


def m(mae, dims):
    return {"mae": mae, "mae_by_dimension": dims}


def test_deploy():
    assert deploy_verdict(m(0.9, {"a": 0.8, "b": 1.0, "c": 1.3}), m(0.92, {}), T)[0] == "DEPLOY"


def test_review_on_mae_band_and_on_gap():
    assert deploy_verdict(m(1.1, {"a": 1.0, "b": 1.0}), m(1.1, {}), T)[0] == "REVIEW"
    status, reasons = deploy_verdict(m(0.9, {"a": 0.8, "b": 0.9}), m(0.7, {}), T)
    assert status == "REVIEW" and "worse than validation" in reasons[0]


def test_a_test_mae_better_than_validation_is_no_warning():
    assert deploy_verdict(m(0.7, {"a": 0.6, "b": 0.8}), m(0.9, {}), T)[0] == "DEPLOY"


def test_review_when_the_student_barely_beats_the_mean():
    status, reasons = deploy_verdict(m(0.26, {"a": 0.26}), m(0.26, {}), T, baseline=0.27)
    assert status == "REVIEW" and "baseline 0.270" in reasons[0]
    assert deploy_verdict(m(0.20, {"a": 0.2}), m(0.2, {}), T, baseline=0.27)[0] == "DEPLOY"


def test_fail_on_mae_or_one_bad_dimension():
    assert deploy_verdict(m(1.3, {"a": 1.3}), m(1.3, {}), T)[0] == "FAIL"
    status, reasons = deploy_verdict(m(0.9, {"a": 0.2, "b": 2.4}), m(0.9, {}), T)
    assert status == "FAIL" and "dimension b" in reasons[0]


def test_error_metrics_per_dimension_and_tier_accuracy(filt):
    records = [{"labels": {"relevance": 8, "groundedness": 8, "style": 8}, "tier": "high"},
               {"labels": {"relevance": 5, "groundedness": 5, "style": 5}, "tier": "medium"}]
    pred = np.array([[7.0, 8.0, 8.0], [5.0, 5.0, 7.0]])
    out = error_metrics(pred, records, filt)
    assert out["mae_by_dimension"] == {"relevance": 0.5, "groundedness": 0.0, "style": 1.0}
    assert out["mae"] == 0.5 and out["tier_accuracy"] == 1.0
    assert baseline_mae(records, records, filt) == 1.5
