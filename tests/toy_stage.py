"""A toy LLM stage, as a new stage author would write one: a prompt builder and a parser on top of the
resumable job helper, nothing else. tests/test_job.py runs it as a real process to show that cache,
journal resume after kill -9, the dry-run plan and the budget stop come with no further code.

    python tests/toy_stage.py --records in.jsonl --out out.jsonl --state .state --base-url http://…/v1
"""
import argparse
from pathlib import Path

from distillery.engine.cache import CallCache
from distillery.engine.engine import Engine
from distillery.engine.job import Accept, Job, JobRunner, Reject, add_dry_run, print_plan, run_job
from distillery.engine.journal import Journal
from distillery.engine.requests import CompleteRequest
from distillery.params import ModelSpec, Price
from distillery.records import load_records, write_records


class Shout(Job):
    name, max_attempts = "shout", 2

    def key(self, record):
        return {"record": record}

    def request(self, record, attempt):
        return CompleteRequest([{"role": "user", "content": f"Shout this: {record['text']}"}], 0.0, 20, attempt)

    def parse(self, record, reply, attempt):
        return Accept({**record, "shout": reply.text.upper()}) if reply.text.strip() else Reject("empty")


def main():
    ap = argparse.ArgumentParser()
    for name in ("records", "out", "state"):
        ap.add_argument(f"--{name}", required=True, type=Path)
    ap.add_argument("--base-url", required=True)
    ap.add_argument("--budget", type=float)
    add_dry_run(ap)
    args = ap.parse_args()
    spec = ModelSpec(provider="openai_compat", model="toy", base_url=args.base_url, concurrency=2, timeout_s=5)
    engine = Engine(spec, CallCache(args.state / "cache.sqlite"), prices={"toy": Price(input=2000.0, output=2000.0)},
                    budget_usd=args.budget)
    runner = JobRunner(Shout(), engine, Journal(args.state / "journal.jsonl"))
    records = load_records(args.records)
    if args.dry_run:
        print_plan("shout", runner.plan(records))
        return
    values, _ = run_job(runner, records, "--budget").in_order(records)
    write_records(args.out, values)


if __name__ == "__main__":
    main()
