"""Calibrate and validate the oracle prompt on a small stratified sample before paying for the corpus.

Rates come with Wilson 95% intervals: on 10-20 records a class, one mistake moves a rate by 5-10
points, and the report should say how much the figure can be trusted.
"""
from __future__ import annotations

import math
import random
import statistics

from distillery.params import CalibrationThresholds, FilterParams, SampleParams

CLASSES = {"on_topic": "n_positive", "off_topic": "n_negative", "edge": "n_edge"}


def stratified_sample(records: list[dict], cfg: SampleParams, exclude: set[str] = frozenset()) -> list[dict]:
    """n_positive on-topic, n_negative off-topic and n_edge edge records (by `expect`), seeded.

    Records in `exclude` (the calibration sample, when validating) are never drawn.
    """
    rng = random.Random(cfg.seed)
    sample = []
    for cls, attr in CLASSES.items():
        pool = [r for r in records if r.get("expect") == cls and r["id"] not in exclude]
        want = getattr(cfg, attr)
        if len(pool) < want:
            raise ValueError(f"calibration sample wants {want} records with expect={cls!r}, "
                             f"the corpus has {len(pool)} available (after excluding {len(exclude)})")
        sample.extend(rng.sample(pool, want))
    return sample


def wilson(k: int, n: int, z: float = 1.96) -> list[float]:
    """95% Wilson score interval for k successes out of n."""
    if n == 0:
        return [0.0, 1.0]
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [round(max(0.0, centre - half), 4), round(min(1.0, centre + half), 4)]


def calibration_metrics(sample: list[dict], labeled: list[dict], failures: list[dict], filt: FilterParams) -> dict:
    """False-positive / false-negative rates, score spread and parse failures of one labeled sample."""
    by_id = {r["id"]: r for r in labeled}
    expect = {r["id"]: r.get("expect") for r in sample}
    off = [by_id[i] for i, e in expect.items() if e == "off_topic" and i in by_id]
    on = [by_id[i] for i, e in expect.items() if e == "on_topic" and i in by_id]
    fp = sum(r["score"] >= filt.positive_min_score for r in off)
    fn = sum(r["score"] < filt.positive_min_score for r in on)
    # Spread: the std of each dimension across the sample, averaged. An oracle that gives every record
    # the same scores (a collapsed or ignored prompt) has spread ~0.
    per_dim = {d: statistics.pstdev([r["labels"][d] for r in labeled]) if len(labeled) > 1 else 0.0
               for d in filt.dimensions}
    parse_failed = sum(f.get("stage_reason") == "parse_failed" for f in failures)
    reasons: dict[str, int] = {}
    for f in failures:
        reasons[f.get("stage_reason", "unknown")] = reasons.get(f.get("stage_reason", "unknown"), 0) + 1
    n = len(sample)
    return {
        "n": n, "labeled": len(labeled), "failures": len(failures),
        "off_topic_n": len(off), "on_topic_n": len(on),
        "false_positive_rate": round(fp / len(off), 4) if off else 0.0,
        "false_positive_ci95": wilson(fp, len(off)),
        "false_negative_rate": round(fn / len(on), 4) if on else 0.0,
        "false_negative_ci95": wilson(fn, len(on)),
        "spread": round(statistics.mean(per_dim.values()), 4),
        "spread_by_dimension": {d: round(v, 4) for d, v in per_dim.items()},
        "failure_rate": round(len(failures) / n, 4) if n else 0.0,
        "parse_failure_rate": round(parse_failed / n, 4) if n else 0.0,
        "failure_reasons": dict(sorted(reasons.items())),
        "mean_score": {cls: round(statistics.mean([by_id[i]["score"] for i, e in expect.items()
                                                    if e == cls and i in by_id]), 4)
                       for cls in CLASSES if any(e == cls and i in by_id for i, e in expect.items())},
    }


def verdict(m: dict, t: CalibrationThresholds, drift_max: float = 0.10) -> tuple[str, list[str]]:
    """PASS / REVIEW / FAIL and the reasons, from the thresholds in params."""
    fails, reviews = [], []
    if m["failure_rate"] > t.parse_fail_max:
        why = ", ".join(f"{k} {v}" for k, v in m.get("failure_reasons", {}).items())
        fails.append(f"{m['failures']} of {m['n']} calls failed ({why}): the figures below rest on failed calls, "
                     "not on the oracle's judgement. Fix the provider or the reply format first (see the "
                     "failures file beside the sample), then the prompt")
        if m["labeled"] < m["n"] / 2:  # too little was judged for the rates to say anything
            return "FAIL", fails
    for rate, pass_at, review_at, label in (
        (m["false_positive_rate"], t.fp_pass, t.fp_review, "off-topic false-positive rate"),
        (m["false_negative_rate"], t.fn_pass, t.fn_review, "on-topic false-negative rate"),
    ):
        if rate > review_at:
            fails.append(f"{label} {rate:.0%} > {review_at:.0%}")
        elif rate >= pass_at:
            reviews.append(f"{label} {rate:.0%} ≥ {pass_at:.0%}")
    if m["spread"] <= t.spread_min:
        fails.append(f"score spread {m['spread']:.2f} ≤ {t.spread_min} (the oracle scores everything alike)")
    if "drift" in m:
        for name, d in m["drift"].items():
            if name.endswith("_rate") and abs(d) > drift_max:
                reviews.append(f"{name} drifted {d:+.0%} from calibration (> {drift_max:.0%}): "
                               "the prompt may be tuned to the calibration sample")
    status = "FAIL" if fails else "REVIEW" if reviews else "PASS"
    return status, fails + reviews


def drift(validation: dict, calibration: dict) -> dict:
    return {k: round(validation[k] - calibration[k], 4)
            for k in ("false_positive_rate", "false_negative_rate", "spread")}


def assess(title: str, sample: list[dict], labeled: list[dict], failures: list[dict], filt: FilterParams,
           t: CalibrationThresholds, baseline: dict | None = None, drift_max: float = 0.10) -> tuple[dict, str]:
    """(metrics with verdict, markdown report) for one labeled sample; `baseline` adds drift."""
    from distillery.reports import calibration_report

    m = calibration_metrics(sample, labeled, failures, filt)
    if baseline is not None:
        m["drift"] = drift(m, baseline)
    status, reasons = verdict(m, t, drift_max)
    m["verdict"], m["reasons"] = status, reasons
    expect = {r["id"]: r.get("expect") for r in sample}
    wrong = [{**r, "expect": expect[r["id"]]} for r in labeled
             if (expect[r["id"]] == "off_topic" and r["score"] >= filt.positive_min_score)
             or (expect[r["id"]] == "on_topic" and r["score"] < filt.positive_min_score)]
    return m, calibration_report(title, m, status, reasons, wrong[:15])
