"""Label throughput against rate-limited APIs (one, or a round-robin chain), and the cost of a rerun.

    python bench/label_throughput.py                          # one provider at 20 rps, 1,000 records
    python bench/label_throughput.py --providers 20,10,5      # round robin over three, 600 records
    options: [--records N] [--latency 0.2] [--concurrency 8] [--rps 20 (one provider, no --providers)]

One loopback server in the OpenAI wire format per provider answers each call after `latency` seconds
and allows that provider's requests a second (a token bucket; past it, 429 with Retry-After). The
engine is told the same limits (each spec's rpm = 60 × its rps): the first provider is the spec, the
others its `chain`, with `routing: round_robin` when there is more than one, and each with
`concurrency` requests in flight (8: enough that concurrency is not what limits it). It labels
`records` records through the real openai SDK (default 1,000 for one provider, 600 for a chain).

Prints the requests per second answered (200) over the whole run as a share of the sum of the limits
(target: >= 0.95 for one provider; >= 0.9 of 35/s for round robin over 20,10,5, where strict turns
reached 0.43), each provider's requests and 429s, then the time of a second run that finds everything
in the cache and journals every record afresh (target < 5% of the first), the same without a journal,
and a resumed run that finds everything in the journal.
"""
import argparse
import os
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from distillery.engine.cache import CallCache  # noqa: E402
from distillery.engine.engine import Engine  # noqa: E402
from distillery.engine.journal import Journal  # noqa: E402
from distillery.labeling.oracle import OraclePrompt, label_all  # noqa: E402
from distillery.params import FilterParams, ModelSpec, from_dict, read_yaml  # noqa: E402
from distillery.records import load_records  # noqa: E402
from distillery.testing.mock_api import MockAPI  # noqa: E402


def make_records(n: int) -> list[dict]:
    """n records from the demo corpus (640); past that, copies with new ids and new prompts (no cache hits)."""
    corpus = load_records(ROOT / "data" / "raw" / "corpus.jsonl")
    records = [{**corpus[i % len(corpus)], "id": f"r{i}",
                "tags": {**corpus[i % len(corpus)].get("tags", {}), "copy": i // len(corpus)}}
               for i in range(n)]
    for i, r in enumerate(records):
        if i >= len(corpus):
            r["messages"] = [*r["messages"][:-1], {**r["messages"][-1],
                                                   "content": f"{r['messages'][-1]['content']} (copy {i})"}]
    return records


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--providers", default=None,
                    help="comma list of each provider's requests per second, e.g. 20,10,5 (default: one, at --rps)")
    ap.add_argument("--records", type=int, default=None, help="default 1000 for one provider, 600 for a chain")
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--rps", type=float, default=20.0, help="the single provider's limit, without --providers")
    ap.add_argument("--concurrency", type=int, default=8, help="requests in flight per provider")
    args = ap.parse_args()

    limits = [float(x) for x in args.providers.split(",")] if args.providers else [args.rps]
    n_records = args.records or (1000 if len(limits) == 1 else 600)
    target = 0.95 if len(limits) == 1 else 0.9
    routing = "round_robin" if len(limits) > 1 else "fallback"

    filt = from_dict(FilterParams, read_yaml(ROOT / "params.yaml")["filter"], "filter")
    prompt = OraclePrompt(ROOT / "prompts" / "oracle.md")
    records = make_records(n_records)
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")
    with tempfile.TemporaryDirectory() as tmp, ExitStack() as stack:
        apis = [stack.enter_context(MockAPI(latency_s=args.latency, rps=rps)) for rps in limits]
        specs = [ModelSpec(provider="openai_compat", model=f"bench-{i}", base_url=api.url + "/v1", max_tokens=64,
                           rpm=rps * 60, concurrency=args.concurrency, timeout_s=10)
                 for i, (api, rps) in enumerate(zip(apis, limits))]
        spec = ModelSpec(**{**vars(specs[0]), "chain": specs[1:], "routing": routing})
        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0, m0 = time.perf_counter(), time.monotonic()
        labeled, failures = label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j1.jsonl"))
        first = time.perf_counter() - t0

        total = sum(limits)
        answered = sum(api.statuses[200] for api in apis)
        sent = sum(api.requests for api in apis)
        limited = sum(api.statuses[429] for api in apis)
        achieved = answered / first
        print(f"providers: {', '.join(f'{rps:g} rps' for rps in limits)} (routing {routing}, latency "
              f"{args.latency:g} s, concurrency {args.concurrency} each, {engine.router.workers()} threads)")
        print(f"first run: {len(labeled)} labeled, {len(failures)} failures, {sent} requests "
              f"({limited} answered 429) in {first:.2f} s")
        print(f"achieved {achieved:.2f} requests/s (answered) against a sum of limits of {total:g}/s: "
              f"share {achieved / total:.3f} (target >= {target:g}); all requests incl. 429s {sent / first:.2f}/s")
        for api, rps, s in zip(apis, limits, specs):
            acc = api.accepted_at
            span = (acc[-1] - acc[0]) if len(acc) > 1 else 0.0
            steady = (len(acc) - 1) / span if span else 0.0
            print(f"  provider {s.model} (limit {rps:g}/s): {api.requests} requests, {api.statuses[200]} answered, "
                  f"{api.statuses[429]} answered 429, share of calls {api.statuses[200] / max(1, answered):.3f} "
                  f"(of limits {rps / total:.3f}), {steady:.2f}/s between its first accepted (at "
                  f"{acc[0] - m0 if acc else 0:.2f} s) and last (at {acc[-1] - m0 if acc else 0:.2f} s), "
                  f"at most {api.max_in_flight} in flight")
        ideal = answered / total + args.latency
        print(f"ideal at the sum of limits: {ideal:.2f} s ({answered} calls / {total:g}/s + one latency), "
              f"{first - ideal:+.2f} s from it; the first request was accepted "
              f"{min(a.accepted_at[0] for a in apis if a.accepted_at) - m0:.2f} s after the start, the providers' "
              f"last ones {max(a.accepted_at[-1] for a in apis if a.accepted_at) - min(a.accepted_at[-1] for a in apis if a.accepted_at):.2f} s apart")
        s = engine.stats
        print(f"engine: {s.calls} calls, {s.retries} retries, {s.failures} failures, "
              f"rate-limit wait {s.rate_limit_wait_s:.1f} s summed over threads")

        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        again, _ = label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j2.jsonl"))
        cached = time.perf_counter() - t0
        print(f"second run, everything in the cache: {cached:.2f} s, {engine.stats.calls} calls, "
              f"{engine.stats.cache_hits} cache hits: {100 * cached / first:.1f}% of the first (target < 5%)")

        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        label_all(records, engine, prompt, filt, journal=None)
        bare = time.perf_counter() - t0
        print(f"  the same without a journal (the cache alone, no fsync per record): {bare:.2f} s, "
              f"{engine.stats.calls} calls: {100 * bare / first:.1f}% of the first")

        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"))
        t0 = time.perf_counter()
        label_all(records, engine, prompt, filt, journal=Journal(Path(tmp) / "j1.jsonl"))
        journaled = time.perf_counter() - t0
        print(f"resumed run, everything in the journal: {journaled:.2f} s ({100 * journaled / first:.1f}% of the first)")
        assert again == labeled
        assert sent == sum(api.requests for api in apis), "the reruns made calls"


if __name__ == "__main__":
    main()
