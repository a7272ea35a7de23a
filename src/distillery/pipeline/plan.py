"""`make plan`: what the next `dvc repro` would spend on LLM calls, before anything is paid.

    python -m distillery.pipeline.plan [--json]

Asks `dvc status` which stages would run (with everything downstream of them), then runs each
LLM stage's own command from dvc.yaml with --dry-run: the stage builds its real prompts and counts
journal and cache hits, so the estimate is of this run, not of a run from scratch. Output tokens are
counted at max_tokens and every attempt a job may make (max_attempts), so the cost is an upper bound.
An LLM stage is one whose script runs the resumable job (engine/job.py), found from its imports:
a new LLM stage shows up here without being listed.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import subprocess
import sys

from pathlib import Path

import yaml

from distillery.pipeline.deps import import_closure, stage_script

JOB_MODULE = Path("src/distillery/engine/job.py")
STALE_ENV = "DISTILLERY_PLAN_STALE"  # paths a dry run must treat as absent (engine.job.fresh reads it)


def llm_stages(dvc_yaml: dict, root: Path = Path(".")) -> list[str]:
    """The stages whose script runs an LLM job (and so takes --dry-run)."""
    out = []
    for name, stage in dvc_yaml["stages"].items():
        script = stage_script(stage["cmd"])
        if script and JOB_MODULE in import_closure(root / script, root / "src"):
            out.append(name)
    return out


def stages_to_run(dvc_yaml: dict) -> list[str]:
    """Stages `dvc repro` would run: those `dvc status` reports, and every stage downstream of them."""
    out = subprocess.run(["dvc", "status", "--json"], capture_output=True, text=True, check=True).stdout
    changed = {name.split(":")[-1] for name in json.loads(out or "{}")}
    stages = dvc_yaml["stages"]
    outs_of = {name: {str(o if isinstance(o, str) else next(iter(o))) for o in s.get("outs", []) + s.get("metrics", [])}
               for name, s in stages.items()}
    grew = True
    while grew:  # a stage whose dep is an out of a stage that runs, runs too
        grew = False
        for name, s in stages.items():
            deps = {str(d) for d in s.get("deps", [])}
            if name not in changed and any(deps & outs_of[c] for c in changed if c in outs_of):
                changed.add(name)
                grew = True
    return [name for name in stages if name in changed]


def stale_outputs(dvc_yaml: dict, run: list[str]) -> list[str]:
    """The outputs the next repro will rewrite: a dry run must not estimate from their old contents."""
    outs = []
    for name in run:
        stage = dvc_yaml["stages"][name]
        outs += [str(o if isinstance(o, str) else next(iter(o))) for o in stage.get("outs", []) + stage.get("metrics", [])]
    return outs


def dry_run(cmd: str, stale: list[str]) -> dict:
    env = {**os.environ, STALE_ENV: os.pathsep.join(stale)}
    proc = subprocess.run(shlex.split(cmd) + ["--dry-run"], capture_output=True, text=True, env=env)
    if proc.returncode:
        raise SystemExit(f"plan: `{cmd} --dry-run` failed:\n{proc.stderr.strip()}")
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("PLAN ")), None)
    if line is None:
        raise SystemExit(f"plan: `{cmd} --dry-run` printed no plan")
    return json.loads(line[5:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the plan as JSON")
    args = ap.parse_args()
    with open("dvc.yaml", encoding="utf-8") as fh:
        dvc_yaml = yaml.safe_load(fh)
    run = stages_to_run(dvc_yaml)
    llm = llm_stages(dvc_yaml)
    stale = stale_outputs(dvc_yaml, run)
    plans = [dry_run(dvc_yaml["stages"][name]["cmd"], stale) for name in run if name in llm]
    total = {k: sum(p.get(k, 0) for p in plans) for k in ("calls", "cache_hits", "journal_hits", "input_tokens",
                                                           "output_tokens_max")}
    total["cost_usd_max"] = round(sum(p["cost_usd_max"] for p in plans), 4)
    for k in ("cost_usd_max_live", "cost_usd_max_batch"):  # the same calls at the live and at the batch price
        total[k] = round(sum(p.get(k, p["cost_usd_max"]) for p in plans), 4)
    # "+": some stage's model has no price, so the total is a floor of what is known, not the bound
    total_cost = f"{total['cost_usd_max']:.4f}" + ("+" if any(not p["priced"] for p in plans) else "")
    total["calls_max"] = sum(p.get("calls_max", p["calls"]) for p in plans)
    if args.json:
        print(json.dumps({"stages_to_run": run, "llm_stages": plans, "total": total}, indent=2, sort_keys=True))
        return
    print(f"dvc repro would run: {', '.join(run) or 'nothing (everything is up to date)'}")
    if not plans:
        return
    print(f"\n{'stage':<13} {'provider':<40} {'records':>7} {'journal':>7} {'cached':>7} {'calls':>7} "
          f"{'in tok':>9} {'out tok≤':>9} {'cost≤ USD':>10} {'live≤':>9} {'batch≤':>9}")
    for p in plans:
        calls = f"{p['calls']}" + (f"-{p['calls_max']}" if p.get("calls_max", p["calls"]) != p["calls"] else "")
        cost = f"{p['cost_usd_max']:.4f}" + (" B" if p.get("batch") else "") if p["priced"] else "unpriced"
        live, batch = (f"{p.get(k, p['cost_usd_max']):.4f}" if p["priced"] else "-"
                       for k in ("cost_usd_max_live", "cost_usd_max_batch"))
        print(f"{p['stage']:<13} {elide(p['provider'], 40):<40} {p['records']:>7} {p['journal_hits']:>7} "
              f"{p['cache_hits']:>7} {calls:>7} {p['input_tokens']:>9} {p['output_tokens_max']:>9} {cost:>10} "
              f"{live:>9} {batch:>9}")
    print(f"{'total':<13} {'':<40} {'':>7} {total['journal_hits']:>7} {total['cache_hits']:>7} "
          f"{total['calls']:>7} {total['input_tokens']:>9} {total['output_tokens_max']:>9} {total_cost:>10} "
          f"{total['cost_usd_max_live']:>9.4f} {total['cost_usd_max_batch']:>9.4f}")
    if any(p.get("batch") for p in plans):
        print("B: sent as vendor batches (batch: true), at the batch price; live≤ / batch≤: the same calls either way")
    notes = [f"{p['stage']}: estimated from {p['corpus']} (its input does not exist yet)" for p in plans
             if p.get("estimated_from_fallback")]
    notes += [f"{p['stage']}: detect_templates has not run; counted every record as flagged" for p in plans
              if p.get("flagged_known") is False]
    notes += [f"{p['stage']}: no price for this model in base.prices; cost not known" for p in plans if not p["priced"]]
    notes += [f"{p['stage']}: {problem} (the run would stop at its first call)" for p in plans
              for problem in p.get("setup_problems", [])]
    notes += [f"{p['stage']}: {p['note']}" for p in plans if p.get("note")]
    for n in notes:
        print(f"note: {n}")


def elide(text: str, width: int) -> str:
    """`text` cut to `width` with a visible … in the middle, so the model's end (its size) still shows."""
    if len(text) <= width:
        return text
    keep = width - 1
    return text[: keep // 2] + "…" + text[-(keep - keep // 2):]


if __name__ == "__main__":
    sys.exit(main())
