"""What a stage leaves for a person: its headline metrics, its details, and markdown reports to read
before deciding (calibration/validation, templates, regeneration, evaluation)."""
from __future__ import annotations

from pathlib import Path

from distillery.records import subject_text, write_json

# What `dvc metrics show`, `dvc exp show` and `make compare` see of each stage: the few figures that
# decide (verdicts, rates, MAE, sizes, calls, cost). Every figure, these included, is in the stage's
# details file (reports/details/<stage>.json): per-provider accounting, reasons, intervals, diversity
# before and after, per-dimension RMSE. A dotted key reaches into a nested figure; a missing one is left out.
HEADLINE = {
    "generate": ("scenarios", "accepted", "failed", "pairs_covered_accepted", "calls_per_accepted", "calls",
                 "cost_usd"),
    "calibrate": ("verdict", "n", "false_positive_rate", "false_negative_rate", "spread", "failures",
                  "agreement_with_labels.mae", "calls", "cost_usd"),
    "validate": ("verdict", "n", "false_positive_rate", "false_negative_rate", "spread", "failures",
                 "agreement_with_labels.mae", "calls", "cost_usd"),
    "templates": ("responses", "patterns", "template_rate", "flagged", "near_duplicate_rate", "distinct_2"),
    "regenerate": ("flagged", "rewritten", "kept_original", "kept_original_reasons", "labels_dropped",
                   "template_rate_before", "template_rate_after", "facts_kept_rate", "inventions", "calls",
                   "cost_usd"),
    "label": ("labeled", "newly_labeled", "kept_existing_labels", "failures", "mean_score", "calls", "cost_usd"),
    "split": ("sizes", "leakage_duplicates_across_splits", "near_duplicate_pairs_across_splits"),
    "train": ("enabled", "best_val_mae", "train_rmse", "train_size", "epochs"),
    "evaluate": ("verdict", "test.mae", "test.rmse", "test.tier_accuracy", "test.mae_by_dimension", "val.mae",
                 "baseline_test_mae"),
    "train_chat": ("enabled", "backend", "train_loss", "val_loss", "train_size", "epochs", "seconds_per_epoch",
                   "tokens_per_second", "peak_rss_gb", "trained_tokens", "cost_usd"),
    "evaluate_chat": ("verdict", "test_conversations", "win_rate_vs_base", "lc_win_rate_vs_base", "flip_rate",
                      "strengths", "template_rate", "valid_tool_calls", "judge_failures", "calls", "cost_usd"),
}


def headline(stage: str, figures: dict) -> dict:
    out: dict = {}
    for key in HEADLINE[stage]:
        *parents, leaf = key.split(".")
        node, into = figures, out
        for part in parents:
            node = node.get(part) if isinstance(node, dict) else None
            into = into.setdefault(part, {})
        if isinstance(node, dict) and leaf in node:
            into[leaf] = node[leaf]
    return {k: v for k, v in out.items() if v != {}}


def write_metrics(stage: str, metrics: Path, details: Path, figures: dict) -> None:
    """The stage's headline figures to its DVC metrics file, all of them to its details file."""
    write_json(details, figures)
    write_json(metrics, headline(stage, figures))

ICON = {"PASS": "✅", "DEPLOY": "✅", "REVIEW": "⚠️", "FAIL": "❌", "SKIPPED": "⏭️"}


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


def evaluation_report(m: dict, verdict: str, reasons: list[str], gate: dict | None = None,
                      figures: list[str] = ()) -> str:
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
    if figures:
        lines += ["", "## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"


def templates_report(m: dict, patterns: list[dict], texts: dict[str, str], examples: int = 3) -> str:
    """Each pattern once, with what it matched and a few of the answers that carry it."""
    lines = ["# Templated responses", "",
             f"{m['templated']} of {m['responses']} answers ({_pct(m['template_rate'])}) carry a pattern below; "
             f"{m['flagged']} are flagged for regeneration (the first {m['max_templates']} answers of each "
             "pattern are kept as they are).", "",
             "| pattern | kind | answers | flagged | text |", "|---|---|---|---|---|"]
    lines += [f"| {p['id']} | {p['kind']} | {p['count']} | {p.get('flagged', '-')} | {_excerpt(p.get('text', ''))} |"
              for p in patterns]
    for p in patterns:
        lines += ["", f"## {p['id']} ({p['kind']}, {p['count']} answers)", "", f"> {_excerpt(p.get('text', ''), 300)}", ""]
        if len(p.get("variants") or []) > 1:
            lines += ["Variants: " + "; ".join(f"`{_excerpt(v, 100)}`" for v in p["variants"][:6]), ""]
        lines += [f"- {rid}: {_excerpt(texts[rid], 300)}" for rid in p.get("example_ids", [])[:examples] if rid in texts]
    return "\n".join(lines) + "\n"


def regenerate_report(m: dict, records: list[dict], pairs: int = 8) -> str:
    """What regenerate did, with before/after pairs and the answers it kept (and why) to read."""
    done = [r for r in records if "regenerated" in r]
    rewritten = [r for r in done if "kept_original" not in r["regenerated"]]
    kept = [r for r in done if "kept_original" in r["regenerated"]]
    lines = ["# Regenerated answers", "",
             f"{m['rewritten']} of {m['flagged']} flagged answers rewritten; {m['kept_original']} kept as they were. "
             f"Template rate {_pct(m['template_rate_before'])} → {_pct(m['template_rate_after'])}."
             + (f" {m['labels_dropped']} rewritten records lost the labels they arrived with (label scores the new "
                "text)." if m["labels_dropped"] else ""), ""]
    if m.get("facts_checked"):
        lost = sum(m["kept_original_reasons"].get(k, 0) for k in ("facts_dropped", "invention"))
        lines += [f"Facts: {_pct(m['facts_kept_rate'])} of the {m['facts_checked']} rewrites written (every attempt) "
                  f"kept every number, unit and name of the original; {m['inventions']} stated a number the "
                  "conversation never did. " + (f"{lost} originals were kept because their last rewrite failed this check."
                                                 if m["check_facts"] else "The check is off (regenerate.check_facts): "
                                                 "these rewrites were not refused for it."), ""]
    if m["kept_original_reasons"] or m["rejections"]:
        lines += ["| reason | kept the original | rejected attempts |", "|---|---|---|"]
        lines += [f"| {reason} | {m['kept_original_reasons'].get(reason, 0)} | {m['rejections'].get(reason, 0)} |"
                  for reason in sorted(set(m["kept_original_reasons"]) | set(m["rejections"]))]
        lines.append("")
    stock = m.get("overrepresented_before_after") or {}
    if stock:
        lines += ["## Over-represented phrases, before and after", "",
                  "The words and phrases detect_templates found most over-represented against human text "
                  "(reports/templates.md), and how many answers carry each before and after this stage.", "",
                  "| n-gram | answers before | answers after |", "|---|---|---|"]
        lines += [f"| `{g}` | {c['before']} | {c['after']} |" for g, c in stock.items()]
        lines.append("")
    lines += ["## Before and after", ""]
    for r in rewritten[:pairs]:
        lines += [f"**{r['id']}** (patterns: {', '.join(r['regenerated'].get('patterns') or []) or '-'})", "",
                  f"- before: {_excerpt(r['regenerated']['from'], 400)}", f"- after: {_excerpt(subject_text(r), 400)}", ""]
    if kept:
        lines += ["## Kept as they were", ""]
        lines += [f"- {r['id']}: {r['regenerated']['kept_original']['reason']}: "
                  f"{_excerpt(r['regenerated']['kept_original'].get('detail') or '', 200)}" for r in kept[:pairs]]
    return "\n".join(lines) + "\n"


def _ratio(x: float | None) -> str:
    return "—" if x is None else f"{x:.3f}"


def chat_evaluation_report(m: dict, examples: list[dict], figures: list[str], comparisons: Path) -> str:
    """The chat student against its base and the reference: the judge's table, traits, style, tool use,
    a few answers side by side."""
    lines = ["# Chat student evaluation", "", f"**Verdict: {ICON[m['verdict']]} {m['verdict']}**", ""]
    lines += [f"- {r}" for r in m["reasons"]] + ["",
              f"{m['test_conversations']} test conversations, judged by `{m['judge']}` in both orders "
              f"(a win counts only when both orders agree). The comparisons are in `{comparisons}`: "
              f"`python -m distillery.judging summarize {comparisons}` prints this table from them.", "",
              "## Pairwise", "",
              "| pair | n | win rate ± SE | W / T / L | LC win rate | soft win rate | flip rate |",
              "|---|---|---|---|---|---|---|"]
    for key in ("student_vs_base", "student_vs_reference", "base_vs_reference"):
        row = m.get(key)
        if row:
            se = "" if row["standard_error"] is None else f" ± {_pct(row['standard_error'])}"
            lines.append(f"| {row['a']} vs {row['b']} | {row['n']} | {_pct(row['win_rate'])}{se} | "
                         f"{row['wins']} / {row['ties']} / {row['losses']} | "
                         f"{'—' if row.get('lc_win_rate') is None else _pct(row['lc_win_rate'])} | "
                         f"{'—' if row.get('soft_win_rate') is None else _pct(row['soft_win_rate'])} | "
                         f"{'—' if row['order'].get('flip_rate') is None else _pct(row['order']['flip_rate'])} |")
    o = m["order"]
    if o.get("two_order"):
        lines += ["", f"Position bias: the verdict changed with the order in {_pct(o['flip_rate'])} of "
                      f"{o['two_order']} pairs ({o['flipped_to_first']} flips favoured the answer shown first, "
                      f"{o['flipped_to_second']} the second)."]
    lines += ["", "The soft win rate is the mean of the judge's own probabilities (a judge that reads token "
                  "probabilities gives them): it moves before the hard verdicts do."]
    bt = m["bradley_terry"]["strengths"]
    lines += ["", "## Bradley–Terry strengths (log-odds, 95% bootstrap interval)", "", "| system | strength | interval |",
              "|---|---|---|"]
    lines += [f"| {s} | {v['strength']:+.3f} | " + (f"[{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]" if "ci" in v else "—") + " |"
              for s, v in sorted(bt.items(), key=lambda kv: -kv[1]["strength"])]
    if m.get("traits"):
        systems = list(m["traits"])
        dims = [k for k in next(iter(m["traits"].values())) if k not in ("n", "score")]
        lines += ["", "## Trait scores (the oracle's prompt, mean per system)", "",
                  "| | " + " | ".join(systems) + " |", "|---" * (len(systems) + 1) + "|"]
        lines += [f"| {d} | " + " | ".join(f"{m['traits'][s][d]:.2f}" for s in systems) + " |" for d in dims + ["score"]]
    style = m["style"]
    lines += ["", "## Did it learn the templates?", "", "| | " + " | ".join(style) + " |", "|---" * (len(style) + 1) + "|"]
    for k in ("template_rate", "distinct_1", "distinct_2", "self_repetition_4gram", "near_duplicate_rate", "mean_words"):
        lines.append(f"| {k} | " + " | ".join(_ratio(style[s].get(k)) if k != "mean_words" else f"{style[s][k]:.1f}"
                                               for s in style) + " |")
    if m.get("tool_calls"):
        lines += ["", "## Tool use", "", "| | tool turns | called | valid | valid rate | errors |", "|---|---|---|---|---|---|"]
        lines += [f"| {s} | {t['n']} | {t['called']} | {t['valid']} | {_pct(t['valid_rate'] or 0)} | "
                  f"{', '.join(f'{k} {v}' for k, v in t['errors'].items()) or '—'} |" for s, t in m["tool_calls"].items()]
    lines += ["", "## Side by side", ""]
    for ex in examples:
        lines += [f"### {ex['id']}", "", f"> {_excerpt(ex['context'], 400)}", ""]
        lines += [f"- **{s}**: {_excerpt(ex[s], 400)}" for s in ("student", "base", "reference")] + [""]
    if figures:
        lines += ["## Figures", ""] + [f"![{Path(f).stem}]({f})" for f in figures]
    return "\n".join(lines) + "\n"
