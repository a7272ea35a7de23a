"""Summarize pairwise comparisons: win rate ± SE, W/T/L, length-controlled win rate and flip rate per pair
of systems, and Bradley–Terry strengths with bootstrap intervals.

    python -m distillery.judging summarize comparisons.jsonl [--json] [--resamples 1000] [--seed 0]

The comparison file's format is in distillery/judging/aggregate.py. A bad line names its file and line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from distillery.judging.aggregate import summarize
from distillery.records import RecordError


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def render_table(summary: dict) -> str:
    """The summary as a plain-text table (percentages; strengths in log-odds)."""
    o = summary["order"]
    lines = [f"{summary['file']}: {summary['n_comparisons']} comparisons of {len(summary['systems'])} systems"]
    if o["two_order"]:
        lines.append(f"orders disagree on {_pct(o['flip_rate'])} of {o['two_order']} two-order comparisons "
                     f"(flipped {o['flipped']}: {o['flipped_to_first']} to the first shown, "
                     f"{o['flipped_to_second']} to the second; half-flipped {o['half_flipped']})")
    lines += ["", f"{'pair':<28}{'n':>6}  {'win rate ± SE':<17}{'W/T/L':<14}{'LC win rate [95%]':<24}flip rate"]
    for r in summary["pairs"]:
        se = "" if r["standard_error"] is None else f" ± {100 * r['standard_error']:.1f}"
        lc = _pct(r["lc_win_rate"])
        if r.get("lc_ci"):
            lc += f" [{100 * r['lc_ci'][0]:.1f}, {100 * r['lc_ci'][1]:.1f}]"
        wtl = f"{r['wins']}/{r['ties']}/{r['losses']}"
        lines.append(f"{r['a'] + ' vs ' + r['b']:<28}{r['n']:>6}  {_pct(r['win_rate']) + se:<17}{wtl:<14}"
                     f"{lc:<24}{_pct(r['order']['flip_rate'])}")
    bt = summary["bradley_terry"]
    lines += ["", f"Bradley–Terry strength ({bt['scale']}; 95% interval from {bt['resamples']} "
                  f"resamples of pair_id, seed {bt['seed']})"]
    for name, s in sorted(bt["strengths"].items(), key=lambda kv: -kv[1]["strength"]):
        ci = f"  [{s['ci'][0]:+.2f}, {s['ci'][1]:+.2f}]" if "ci" in s else ""
        lines.append(f"  {name:<26}{s['strength']:+.2f}{ci}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m distillery.judging", description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    su = sub.add_parser("summarize", help="the win-rate table and Bradley–Terry strengths of a comparison file")
    su.add_argument("path", type=Path, help="comparisons (JSONL), one a line")
    su.add_argument("--json", action="store_true", help="print the whole summary as JSON instead of a table")
    su.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples of pair_id (0: no intervals)")
    su.add_argument("--seed", type=int, default=0, help="seeds the bootstrap")
    args = ap.parse_args(argv)
    try:
        summary = summarize(args.path, resamples=args.resamples, seed=args.seed)
    except (RecordError, ValueError, OSError) as exc:
        raise SystemExit(f"summarize: {exc}") from None
    print(json.dumps(summary, indent=2, sort_keys=True, ensure_ascii=False) if args.json else render_table(summary))


if __name__ == "__main__":
    main()
