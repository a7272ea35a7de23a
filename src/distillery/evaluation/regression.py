"""Score the student against the oracle on held-out data, and decide DEPLOY / REVIEW / FAIL."""
from __future__ import annotations

import numpy as np

from distillery.params import EvaluateThresholds, FilterParams
from distillery.labeling.scoring import tier_of, weighted_score


def error_metrics(pred: np.ndarray, records: list[dict], filt: FilterParams) -> dict:
    """MAE and RMSE overall and per dimension, and tier accuracy, of predictions vs oracle labels."""
    dims = list(filt.dimensions)
    gold = np.array([[r["labels"][d] for d in dims] for r in records], dtype=float)
    err = pred - gold
    pred_tiers = [tier_of(weighted_score(dict(zip(dims, row)), filt), filt) for row in pred]
    return {
        "n": len(records),
        "mae": round(float(np.abs(err).mean()), 4),
        "rmse": round(float(np.sqrt((err ** 2).mean())), 4),
        "mae_by_dimension": {d: round(float(np.abs(err[:, i]).mean()), 4) for i, d in enumerate(dims)},
        "rmse_by_dimension": {d: round(float(np.sqrt((err[:, i] ** 2).mean())), 4) for i, d in enumerate(dims)},
        "tier_accuracy": round(float(np.mean([p == r["tier"] for p, r in zip(pred_tiers, records)])), 4),
    }


def baseline_mae(train: list[dict], test: list[dict], filt: FilterParams) -> float:
    """MAE of always predicting the training mean: the number a useful student must beat."""
    dims = list(filt.dimensions)
    mean = np.array([[r["labels"][d] for d in dims] for r in train]).mean(axis=0)
    gold = np.array([[r["labels"][d] for d in dims] for r in test])
    return round(float(np.abs(gold - mean).mean()), 4)


def deploy_verdict(test: dict, val: dict, t: EvaluateThresholds, baseline: float | None = None) -> tuple[str, list[str]]:
    """DEPLOY when test MAE < deploy_mae, most dimensions < dim_deploy, test - val ≤ max_gap and the
    student beats predicting the training mean by min_baseline_gain; FAIL above review_mae or with any
    dimension above dim_fail; REVIEW between."""
    dims = test["mae_by_dimension"]
    worst = max(dims, key=dims.get)
    gap = test["mae"] - val["mae"]  # one-sided: a test set the student does *better* on is no warning
    if test["mae"] > t.review_mae:
        return "FAIL", [f"test MAE {test['mae']:.3f} > {t.review_mae}"]
    if dims[worst] > t.dim_fail:
        return "FAIL", [f"dimension {worst} MAE {dims[worst]:.3f} > {t.dim_fail}"]
    reasons = []
    if test["mae"] >= t.deploy_mae:
        reasons.append(f"test MAE {test['mae']:.3f} between {t.deploy_mae} and {t.review_mae}")
    good = sum(v < t.dim_deploy for v in dims.values())
    if good <= len(dims) / 2:
        reasons.append(f"only {good}/{len(dims)} dimensions under MAE {t.dim_deploy}")
    if gap > t.max_gap:
        reasons.append(f"test MAE is {gap:.3f} worse than validation (> {t.max_gap})")
    if baseline is not None and test["mae"] > baseline * (1 - t.min_baseline_gain):
        # Labels with little spread make any MAE small; a student that barely beats the mean learned little.
        reasons.append(f"test MAE {test['mae']:.3f} is not {t.min_baseline_gain:.0%} below the baseline "
                       f"{baseline:.3f} (always predicting the training mean)")
    return ("REVIEW", reasons) if reasons else ("DEPLOY", [f"test MAE {test['mae']:.3f} < {t.deploy_mae}"])
