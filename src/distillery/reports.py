"""Markdown reports a person reads before deciding: calibration/validation and evaluation."""
from __future__ import annotations

from distillery.records import subject_text

ICON = {"PASS": "✅", "DEPLOY": "✅", "REVIEW": "⚠️", "FAIL": "❌"}


def _pct(x: float) -> str:
    return f"{x:.0%}"


def calibration_report(title: str, m: dict, verdict: str, reasons: list[str], worst: list[dict]) -> str:
    lines = [f"# {title}", "", f"**Verdict: {ICON[verdict]} {verdict}**", ""]
    lines += [f"- {r}" for r in reasons] + ([""] if reasons else [])
    lines += [
        "| figure | value | 95% interval |", "|---|---|---|",
        f"| off-topic false-positive rate ({m['off_topic_n']} off-topic) | {_pct(m['false_positive_rate'])} | "
        f"{_pct(m['false_positive_ci95'][0])}–{_pct(m['false_positive_ci95'][1])} |",
        f"| on-topic false-negative rate ({m['on_topic_n']} on-topic) | {_pct(m['false_negative_rate'])} | "
        f"{_pct(m['false_negative_ci95'][0])}–{_pct(m['false_negative_ci95'][1])} |",
        f"| score spread (mean std per dimension) | {m['spread']:.2f} | |",
        f"| failed or unparseable replies | {_pct(m['failure_rate'])} | |",
    ]
    agree = m.get("agreement_with_labels")
    if agree:
        lo, hi = agree["tier_agreement_ci95"]
        lines += [f"| oracle vs your labels: MAE ({agree['n']} labeled records) | {agree['mae']:.2f} | |",
                  f"| oracle vs your labels: same tier | {_pct(agree['tier_agreement'])} | {_pct(lo)}–{_pct(hi)} |"]
        lines += [f"| oracle vs your labels: MAE {d} | {v:.2f} | |" for d, v in agree["mae_by_dimension"].items()]
    if "drift" in m:
        lines += [f"| drift vs calibration: {k} | {v:+.3f} | |" for k, v in m["drift"].items()]
    lines += ["", "Mean weighted score by expected class: " +
              ", ".join(f"{k} {v:.2f}" for k, v in m["mean_score"].items()), ""]
    if worst:
        dims = list(worst[0].get("labels", {}))
        lines += ["## Disagreements to read", "",
                  "| id | expected | score | tier | " + " | ".join(dims) + " | answer |",
                  "|---|---|---|---|" + "---|" * len(dims) + "---|"]
        lines += [f"| {r['id']} | {r['expect']} | {r['score']:.2f} | {r['tier']} | "
                  + " | ".join(f"{r['labels'][d]:.1f}" for d in dims)
                  + f" | {_excerpt(subject_text(r)) if 'text' in r or 'messages' in r else ''} |"
                  for r in worst]
    return "\n".join(lines) + "\n"


def _excerpt(text: str, n: int = 120) -> str:
    text = " ".join(text.split()).replace("|", "\\|")
    return text if len(text) <= n else text[: n - 1] + "…"


def evaluation_report(m: dict, verdict: str, reasons: list[str], gate: dict | None = None) -> str:
    test, val = m["test"], m["val"]
    lines = ["# Student evaluation", "", f"**Verdict: {ICON[verdict]} {verdict}**", ""]
    if gate and gate.get("verdict") != "PASS":
        lines += [f"> The labels this student learned from were made by an oracle whose check said "
                  f"**{gate['verdict']}** ({'; '.join(gate.get('reasons', [])[:2])}): the MAE below is "
                  "against those labels, so read it with that in mind.", ""]
    lines += [f"- {r}" for r in reasons] + [""]
    lines += ["| | val | test |", "|---|---|---|",
              f"| MAE | {val['mae']:.3f} | {test['mae']:.3f} |",
              f"| RMSE | {val['rmse']:.3f} | {test['rmse']:.3f} |",
              f"| tier accuracy | {_pct(val['tier_accuracy'])} | {_pct(test['tier_accuracy'])} |",
              f"| records | {val['n']} | {test['n']} |", "",
              f"Baseline (predict the training mean) test MAE: {m['baseline_test_mae']:.3f}"
              + (" — **the student does worse than this baseline**" if test["mae"] >= m["baseline_test_mae"] else ""),
              "",
              "## Per dimension (test)", "", "| dimension | MAE | RMSE |", "|---|---|---|"]
    lines += [f"| {d} | {mae:.3f} | {test['rmse_by_dimension'][d]:.3f} |" for d, mae in test["mae_by_dimension"].items()]
    return "\n".join(lines) + "\n"
