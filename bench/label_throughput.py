"""Label throughput against a rate-limited API, and the cost of a rerun.

    python bench/label_throughput.py [--records 1000] [--latency 0.2] [--rps 20] [--concurrency 8]

A loopback server in the OpenAI wire format answers each call after `latency` seconds and allows
`rps` requests a second (a token bucket; past it, 429 with Retry-After). The engine is told the same
limit (rpm = 60 × rps) and labels `records` records through the real openai SDK. Prints the achieved
requests per second as a share of the limit (target ≥ 0.95), then the time of a second run that finds
everything in the cache (target < 5% of the first).
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from distillery.engine.cache import CallCache
from distillery.engine.journal import Journal  # noqa: E402
from distillery.engine.engine import Engine  # noqa: E402
from distillery.testing.mock_api import MockAPI  # noqa: E402
from distillery.labeling.oracle import OraclePrompt, label_all  # noqa: E402
from distillery.params import FilterParams, ModelSpec, load_section  # noqa: E402
from distillery.records import load_records  # noqa: E402


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rps", type=float, default=20.0)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    filt = load_section(ROOT / "params.yaml", "filter", FilterParams)
    prompt = OraclePrompt(ROOT / "prompts" / "oracle.md")
    corpus = load_records(ROOT / "data" / "raw" / "corpus.jsonl")
    # The demo corpus has 640 records; past that, copies with new ids (new prompts, so no cache hits).
    records = [{**corpus[i % len(corpus)], "id": f"r{i}",
                "tags": {**corpus[i % len(corpus)].get("tags", {}), "copy": i // len(corpus)}}
               for i in range(args.records)]
    for i, r in enumerate(records):
        if i >= len(corpus):
            r["messages"] = [*r["messages"][:-1], {**r["messages"][-1],
                                                   "content": f"{r['messages'][-1]['content']} (copy {i})"}]
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")
    with tempfile.TemporaryDirectory() as tmp, MockAPI(latency_s=args.latency, rps=args.rps) as api:
        spec = ModelSpec(provider="openai_compat", model="bench", base_url=api.url + "/v1", max_tokens=64,
                         rpm=args.rps * 60, concurrency=args.concurrency, timeout_s=10)
        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        labeled, failures = label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j1.jsonl"))
        first = time.perf_counter() - t0
        achieved = api.statuses[200] / first
        print(f"first run: {len(labeled)} labeled, {len(failures)} failures, {api.requests} requests "
              f"({api.statuses[429]} answered 429) in {first:.1f} s")
        print(f"achieved {achieved:.2f} requests/s against a limit of {args.rps:g}: "
              f"share of the limit {achieved / args.rps:.3f} (target >= 0.95); "
              f"at most {api.max_in_flight} in flight")

        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        again, _ = label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j2.jsonl"))
        cached = time.perf_counter() - t0
        print(f"second run, everything in the cache: {cached:.2f} s, {engine.stats.calls} calls, "
              f"{engine.stats.cache_hits} cache hits: {100 * cached / first:.1f}% of the first (target < 5%)")

        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j1.jsonl"))
        journaled = time.perf_counter() - t0
        print(f"resumed run, everything in the journal: {journaled:.2f} s ({100 * journaled / first:.1f}% of the first)")
        assert again == labeled


if __name__ == "__main__":
    main()
