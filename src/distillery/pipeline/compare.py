"""`make compare`: experiments side by side in one screen: the params that differ between them and the
figures that decide (verdicts, rates, MAE, sizes, calls and cost), not every long-tail metric.

    python -m distillery.pipeline.compare [-A]     # -A: every commit, as `dvc exp show -A`

It reads `dvc exp show --csv` and keeps those columns; `dvc exp show` still shows everything.
"""
from __future__ import annotations

import csv
import io
import re
import subprocess
import sys

HEADLINE = re.compile(r"(verdict|_rate$|(^|[.:])mae$|template_rate_after|sizes\.|^.*:(calls|cost_usd|labeled|"
                      r"failures|flagged|rewritten)$|best_val_mae|tier_accuracy$)")
SKIP = re.compile(r"(^|:)(before|after|drift)\.|parse_failure_rate|exact_duplicate_rate|(calibration|validation)_verdict"
                  r"|(calibrate|validate).json:(failures|labeled|cost_usd)$")
FIXED = ("Experiment", "rev", "Created")


def param_names(path: str = "params.yaml") -> set[str]:
    """Every flattened key of params.yaml (`split.seed`), as `dvc exp show` names its param columns."""
    import yaml

    def flat(node, prefix=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from flat(v, f"{prefix}{k}.")
        yield prefix.rstrip(".")

    with open(path, encoding="utf-8") as fh:
        return set(flat(yaml.safe_load(fh)))


def select(rows: list[dict], params: set[str]) -> list[str]:
    """The columns worth a screen: the experiment, params that differ, headline metrics. `dvc exp show`
    prefixes a column with its file only where the name alone is ambiguous."""
    cols = list(rows[0]) if rows else []
    changed = [c for c in cols if c.split(":")[-1] in params and len({r[c] for r in rows}) > 1]
    metrics = [c for c in cols if c.split(":")[-1] not in params and "/" not in c.split(":")[-1]
               and c not in FIXED and HEADLINE.search(c) and not SKIP.search(c)]
    return [c for c in FIXED if c in cols] + changed + metrics


def table(rows: list[dict], cols: list[str]) -> str:
    short = {c: c.split(":", 1)[-1] if ":" in c else c for c in cols}
    short = {c: (c.split("/")[-1].replace(".json:", ".") if c.startswith("metrics/") else s) for c, s in short.items()}
    width = {c: max(len(short[c]), *(len(r.get(c, "")) for r in rows)) for c in cols}
    lines = ["  ".join(short[c].ljust(width[c]) for c in cols)]
    lines += ["  ".join(r.get(c, "").ljust(width[c]) for c in cols) for r in rows]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    out = subprocess.run(["dvc", "exp", "show", "--csv", *(argv if argv is not None else sys.argv[1:])],
                         capture_output=True, text=True, check=True).stdout
    rows = list(csv.DictReader(io.StringIO(out)))
    text = table(rows, select(rows, param_names()))
    try:
        print(text)
    except BrokenPipeError:  # `make compare | head`
        pass
    return text


if __name__ == "__main__":
    main()
