"""Calibrate and validate the oracle prompt on a small stratified sample before paying for the corpus.

Rates come with Wilson 95% intervals: on 10-20 records a class, one mistake moves a rate by 5-10
points, and the report should say how much the figure can be trusted.
"""
from __future__ import annotations

import math
import random
import statistics

from distillery.labeling.scoring import tier_of, weighted_score
from distillery.params import CalibrationThresholds, FilterParams, SampleParams

CLASSES = {"on_topic": "n_positive", "off_topic": "n_negative", "edge": "n_edge"}


def with_expect_from_labels(records: list[dict], filt: FilterParams) -> list[dict]:
    """Records that carry trusted `labels` but no `expect` hint get one from those labels: on_topic when
    their weighted score reaches positive_min_score, else off_topic (`expect_from: labels`). So a
    labeled corpus needs no hints, and calibration measures the oracle against the labels."""
    from distillery.labeling.reply import ParseError, validate_scores

    out = []
    for r in records:
        if "expect" not in r and "labels" in r:
            try:
                score = weighted_score(validate_scores(r["labels"], filt), filt)
            except ParseError:
                out.append(r)  # label reports bad labels with file and line; the sample just skips them
                continue
            r = {**r, "expect": "on_topic" if score >= filt.positive_min_score else "off_topic",
                 "expect_from": "labels"}
        out.append(r)
    return out


def stratified_sample(records: list[dict], cfg: SampleParams, exclude: set[str] = frozenset(),
                      section: str = "calibrate") -> list[dict]:
    """n_positive on-topic, n_negative off-topic and n_edge edge records (by `expect`), seeded.

    Records in `exclude` (the calibration sample, when validating) are never drawn. Edge records are
    drawn as far as there are some when the hints came from labels (labels say nothing of edges).
    """
    rng = random.Random(cfg.seed)
    sample = []
    from_labels = any(r.get("expect_from") == "labels" for r in records)
    for cls, attr in CLASSES.items():
        pool = [r for r in records if r.get("expect") == cls and r["id"] not in exclude]
        want = getattr(cfg, attr)
        if cls == "edge" and from_labels:
            want = min(want, len(pool))
        if len(pool) < want:
            raise ValueError(f"{section}.{attr} is {want}, but the corpus has {len(pool)} records with "
                             f"expect={cls!r} (after excluding {len(exclude)} already drawn): lower "
                             f"{section}.{attr}, or add `expect` hints or trusted `labels` to more records")
        sample.extend(rng.sample(pool, want))
    return sample


def agreement(sample: list[dict], labeled: list[dict], filt: FilterParams) -> dict | None:
    """The oracle against the trusted labels the sample arrived with: MAE per dimension, tier agreement
    (Wilson 95% interval). None when no sampled record carried labels."""
    trusted = {r["id"]: r["labels"] for r in sample if "labels" in r}
    pairs = [(trusted[r["id"]], r) for r in labeled if r["id"] in trusted]
    if not pairs:
        return None
    dims = list(filt.dimensions)
    mae = {d: round(statistics.mean(abs(float(t[d]) - o["labels"][d]) for t, o in pairs), 4) for d in dims}
    same = sum(tier_of(weighted_score({d: float(t[d]) for d in dims}, filt), filt) == o["tier"] for t, o in pairs)
    return {"n": len(pairs), "mae": round(statistics.mean(mae.values()), 4), "mae_by_dimension": mae,
            "tier_agreement": round(same / len(pairs), 4), "tier_agreement_ci95": wilson(same, len(pairs))}


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
    agree = m.get("agreement_with_labels")
    if agree and agree["mae"] > t.label_mae_fail:
        fails.append(f"the oracle is {agree['mae']:.2f} from your labels on average (> {t.label_mae_fail})")
    elif agree and agree["mae"] > t.label_mae_review:
        reviews.append(f"the oracle is {agree['mae']:.2f} from your labels on average (> {t.label_mae_review})")
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
    agree = agreement(sample, labeled, filt)
    if agree is not None:
        m["agreement_with_labels"] = agree
    if baseline is not None:
        m["drift"] = drift(m, baseline)
    status, reasons = verdict(m, t, drift_max)
    m["verdict"], m["reasons"] = status, reasons
    expect = {r["id"]: r.get("expect") for r in sample}
    wrong = [{**r, "expect": expect[r["id"]]} for r in labeled
             if (expect[r["id"]] == "off_topic" and r["score"] >= filt.positive_min_score)
             or (expect[r["id"]] == "on_topic" and r["score"] < filt.positive_min_score)]
    return m, calibration_report(title, m, status, reasons, wrong[:15])


def write_skipped(stage: str, title: str, *, sample, labeled, failures, report, metrics, details) -> None:
    """The outputs of a check the user switched off (calibrate.skip): said, not hidden. Empty samples,
    a SKIPPED verdict in the metrics, and a report that says the oracle's labels go unchecked."""
    from distillery.records import write_records
    from distillery.reports import write_metrics

    reason = "calibrate.skip is true: the oracle was not checked before labeling"
    for path in (sample, labeled, failures):
        write_records(path, [])
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(f"# {title}\n\n**Verdict: SKIPPED**\n\n- {reason}. Its labels are used unchecked.\n",
                      encoding="utf-8")
    write_metrics(stage, metrics, details, {"verdict": "SKIPPED", "reasons": [reason], "n": 0, "labeled": 0, "failures": 0})
