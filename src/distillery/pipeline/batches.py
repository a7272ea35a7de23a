"""`make batches` (`make jobs`): this project's vendor batches and hosted fine-tuning jobs, what each stage's
ledger recorded and what the vendor says now; `--cancel` cancels one, or every open one.

    python -m distillery.pipeline.batches                  # every ledger: open jobs asked at the vendor
    python -m distillery.pipeline.batches --all            # closed ones too (from the ledger only)
    python -m distillery.pipeline.batches --cancel ID      # one batch (its id as listed), or `--cancel open`
    python -m distillery.pipeline.batches --forget ID      # stop waiting for a batch (the vendor lost it)

A cancelled batch keeps the results it finished: the next `dvc repro` of its stage collects them and
sends the rest again (set the stage's `batch: false` to send them live instead).
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys

from distillery.engine.remote import Ledger, ledger_dir
from distillery.params import load_params
from distillery.providers.base import get_provider


def jobs(state_dir, cache_path=None) -> list[dict]:
    out = []
    for path in sorted(ledger_dir(state_dir, cache_path).glob("*.jsonl")):
        ledger = Ledger(path, path.stem)
        for job in ledger.entries().values():
            done = "closed" in job or "abandoned" in job or job.get("kind") == "file"  # an uploaded file waits for nothing
            out.append({**job, "stage": path.stem, "open": not done})
    return out


def vendor_api(job: dict):
    """The vendor adapter that knows this job: a batch API, or a fine-tuning API (kind "job")."""
    if job.get("kind") == "job":
        from distillery.providers.finetune import finetune_api

        return finetune_api(job["vendor"], job["model"], job.get("base_url"))
    provider = get_provider(job["provider"], job["model"], job.get("base_url"))
    return provider.batch_api()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--all", action="store_true", help="closed and abandoned batches too")
    ap.add_argument("--cancel", metavar="ID", help="cancel the batch with this id, or `open`: every open one")
    ap.add_argument("--forget", metavar="ID", help="mark an open batch abandoned: the next run stops waiting for "
                                                   "it and sends its requests again")
    ap.add_argument("--params", default="params.yaml")
    args = ap.parse_args(argv)
    base = load_params(args.params).base
    found = jobs(base.state_dir, base.cache_path)
    if args.forget:
        chosen = [j for j in found if j["open"] and args.forget in (j.get("id"), j["tag"])]
        for job in chosen:
            Ledger(ledger_dir(base.state_dir, base.cache_path) / f"{job['stage']}.jsonl", job["stage"]).write(
                "abandoned", job["tag"], why="forgotten by `make batches FORGET=…`")
            print(f"forgotten: {job['stage']} {job.get('id') or job['tag']}; its requests go again next run")
        return 0 if chosen else 1
    if args.cancel:
        chosen = [j for j in found if j["open"] and j.get("id") and args.cancel in ("open", j["id"])]
        if not chosen:
            print(f"no open batch {args.cancel!r} in this project's ledgers")
            return 1
        for job in chosen:
            vendor_api(job).cancel(job["id"])
            after = ("the stage's next run stops with the job's cancelled state; the one after starts a new job"
                     if job.get("kind") == "job" else
                     "the next `dvc repro` collects what it finished and sends the rest again")
            print(f"cancel requested: {job['stage']} {job['id']} ({job['provider']}/{job['model']}); {after}")
        return 0
    shown = [j for j in found if j["open"] or args.all]
    if not shown:
        print("no open batches" + ("" if args.all else " (--all lists closed ones too)"))
        return 0
    print(f"{'stage':<14} {'vendor':<10} {'id':<40} {'requests':>8}  {'submitted':<16} state")
    for job in shown:
        state = job.get("state", "abandoned" if "abandoned" in job else "")
        if job["open"]:
            try:
                s = vendor_api(job).status(job["id"]) if job.get("id") else None
                state = (f"{s.state}: " + ", ".join(f"{k} {v}" if job.get("kind") == "job" else f"{v} {k}"
                                                     for k, v in s.counts.items() if v)) if s else \
                    "intent only (created? the stage's next run asks the vendor)"
            except Exception as exc:  # noqa: BLE001 - listing must not die on one vendor
                state = f"unknown ({type(exc).__name__}: {exc})"
        elif job.get("kind") == "file":
            state = f"training file, {job.get('bytes', 0)} bytes"
        elif job.get("kind") == "job":
            state = f"closed ({state}): {job.get('model') or job.get('error') or ''}"
        else:
            state = f"closed ({state}): {job.get('succeeded', 0)} succeeded, {job.get('errored', 0)} errored, " \
                    f"{job.get('expired', 0)} expired"
        when = dt.datetime.fromtimestamp(job["at"]).strftime("%Y-%m-%d %H:%M")
        print(f"{job['stage']:<14} {job.get('vendor', ''):<10} {job.get('id') or '-':<40} {job.get('n', 0):>8}  "
              f"{when:<16} {state}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
