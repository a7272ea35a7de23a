"""A fully cached rerun of 100,000 records takes under 10 s, whatever the concurrency.

    python bench/cached_rerun.py [--records 100000] [--concurrency 128,8] [--no-label] [--journal-records 2000]

Builds `records` short synthetic weather conversations and their oracle prompts (build_messages with
params.yaml's filter and prompts/oracle.md, a JSON reply asked for with the reply schema: the very
CompleteRequest the label stage sends for attempt 0), and fills a fresh call cache in a temporary
folder with an answer under each request's key for an openai_compat spec (one SQLite transaction).
That setup is timed and printed, but is not part of the figures.

Then, for each concurrency, a fresh engine (the spec pointed at a dead base_url, so any miss would
fail loudly) runs `engine.run_all(requests)`; the figure is the seconds that takes, end to end: the
bulk cache lookup (the key of every request, SQLite, decoding each answer) and yielding the results.
It asserts no call was made and every request was a cache hit. Unless --no-label, it also times the
whole label path for the same records (label_all without a journal: building each request through
OracleJob, the engine, and parsing and scoring each reply), at the first concurrency, and the same
with a fresh journal on the first --journal-records records (a journal fsyncs each record), scaled up.
Target: under 10 s for 100,000 records at every concurrency.
"""
import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from distillery.engine.cache import CallCache  # noqa: E402
from distillery.engine.engine import Engine  # noqa: E402
from distillery.engine.journal import Journal  # noqa: E402
from distillery.engine.requests import CallFailed, CompleteRequest  # noqa: E402
from distillery.labeling.oracle import OraclePrompt, build_messages, label_all  # noqa: E402
from distillery.labeling.reply import reply_schema  # noqa: E402
from distillery.params import FilterParams, ModelSpec, from_dict, read_yaml  # noqa: E402

DEAD_URL = "http://127.0.0.1:9/v1"  # the discard port: nothing listens, so a call fails at once
TARGET_S = 10.0
CITIES = ["Paris", "Prague", "Denver", "Lisbon", "Oslo", "Kyoto", "Lima", "Cairo", "Austin", "Perth"]
DAYS = ["today", "tomorrow", "on Saturday", "this weekend", "on Monday"]
SKIES = ["sunny", "light rain", "fog", "snow", "overcast", "thunderstorms"]
PERSONAS = ["a concise, neutral weather and travel assistant", "a warm hotel concierge",
            "a weather assistant who talks like a pirate", "a cheerful travel agent"]


def make_record(i: int, rng: random.Random) -> dict:
    """A short conversation in the corpus's shape: system, user, tool call, tool result, answer."""
    city, day, sky = rng.choice(CITIES), rng.choice(DAYS), rng.choice(SKIES)
    temp = rng.randint(-10, 35)
    result = {"city": city, "day": day, "condition": sky, "temp_c": temp, "precip_pct": rng.randint(0, 100)}
    return {"id": f"r{i}", "tags": {"persona": i % len(PERSONAS)}, "messages": [
        {"role": "system", "content": f"You are {rng.choice(PERSONAS)}."},
        {"role": "user", "content": f"What's the weather in {city} {day}? (question {i})"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"call_{i}", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city, "day": day})}}]},
        {"role": "tool", "tool_call_id": f"call_{i}", "content": json.dumps(result)},
        {"role": "assistant", "content": f"{city} {day}: {sky}, about {temp} °C. "
                                         f"{'Take an umbrella.' if 'rain' in sky else 'Enjoy your day.'}"}]}


def answer(filt: FilterParams, rng: random.Random, request: CompleteRequest) -> dict:
    """What an oracle's reply looks like in the cache (Completion.to_dict())."""
    scores = {d: rng.randint(0, 10) for d in filt.dimensions}
    text = json.dumps({"scores": scores, "reasoning": "mock"})
    chars = sum(len(str(m.get("content") or "")) for m in request.messages)
    return {"text": text, "input_tokens": chars // 4, "output_tokens": len(text) // 4, "provider": "openai_compat",
            "model": "bench-oracle", "scores": None, "meta": {"finish_reason": "stop"}}


def request_key(engine):
    """The engine's cache key function (member, request) -> key: Engine.key, or its ChainCache's."""
    return getattr(engine, "key", None) or engine.cache.key


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--concurrency", default="128,8", help="comma list; one timed run each")
    ap.add_argument("--no-label", action="store_true", help="skip timing the whole label path (label_all)")
    ap.add_argument("--journal-records", type=int, default=2000,
                    help="also time label_all with a fresh journal on this many records (0: skip)")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    filt = from_dict(FilterParams, read_yaml(ROOT / "params.yaml")["filter"], "filter")
    prompt = OraclePrompt(ROOT / "prompts" / "oracle.md")
    os.environ.setdefault("OPENAI_API_KEY", "bench-key")

    def spec_at(concurrency: int) -> ModelSpec:
        # The label stage's oracle spec shape (temperature 0, a JSON reply), hosted, behind a dead URL.
        return ModelSpec(provider="openai_compat", model="bench-oracle", base_url=DEAD_URL, max_tokens=200,
                         context_chars=500, concurrency=concurrency, timeout_s=2)

    with tempfile.TemporaryDirectory() as tmp:
        cache_path = Path(tmp) / "cache.sqlite"
        rng = random.Random(0)
        t0 = time.perf_counter()
        records = [make_record(i, rng) for i in range(args.records)]
        spec = spec_at(levels[0])
        schema = reply_schema(filt)
        requests = [CompleteRequest(build_messages(r, prompt, filt, json_reply=True, context_chars=spec.context_chars),
                                    spec.temperature, spec.max_tokens, 0, schema) for r in records]
        t_build = time.perf_counter() - t0
        t0 = time.perf_counter()
        cache = CallCache(cache_path)
        filler = Engine(spec, cache)
        member = filler.members[0]
        key = request_key(filler)
        rows = [(key(member, q), json.dumps(answer(filt, rng, q))) for q in requests]
        with cache._lock, cache._db:  # one transaction for all of them
            cache._db.executemany("INSERT OR REPLACE INTO calls VALUES (?, ?)", rows)
        cache.close()
        t_fill = time.perf_counter() - t0
        size_mb = cache_path.stat().st_size / 1e6 + (Path(str(cache_path) + "-wal").stat().st_size / 1e6
                                                      if Path(str(cache_path) + "-wal").exists() else 0.0)
        chars = sum(sum(len(str(m["content"])) for m in q.messages) for q in requests) / len(requests)
        print(f"setup (not timed below): {len(records)} records and requests built in {t_build:.2f} s "
              f"(prompts of {chars:.0f} characters on average); cache filled with {len(rows)} answers in "
              f"{t_fill:.2f} s ({size_mb:.0f} MB)")

        for concurrency in levels:
            t0 = time.perf_counter()
            cache = CallCache(cache_path)
            engine = Engine(spec_at(concurrency), cache)
            t_engine = time.perf_counter() - t0
            t0 = time.perf_counter()
            results = engine.run_all(requests)
            seconds = time.perf_counter() - t0
            failed = sum(isinstance(r, CallFailed) for r in results)
            s = engine.stats
            assert s.calls == 0 and failed == 0 and s.cache_hits == len(requests), (s.calls, failed, s.cache_hits)
            print(f"engine.run_all, concurrency {concurrency}: {len(requests)} records in {seconds:.2f} s "
                  f"({len(requests) / seconds:,.0f} cache hits/s; {s.cache_hits} hits, {s.calls} calls, "
                  f"{failed} failed; engine built in {t_engine:.3f} s, not counted): "
                  f"{'PASS' if seconds < TARGET_S else 'FAIL'} (target < {TARGET_S:g} s)")
            cache.close()

        if not args.no_label:
            cache = CallCache(cache_path)
            engine = Engine(spec_at(levels[0]), cache)
            t0 = time.perf_counter()
            labeled, failures = label_all(records, engine, prompt, filt, journal=None)
            seconds = time.perf_counter() - t0
            s = engine.stats
            assert s.calls == 0 and s.cache_hits == len(records) and len(labeled) == len(records), \
                (s.calls, s.cache_hits, len(labeled), failures[:1])
            print(f"label_all (no journal), concurrency {levels[0]}: {len(records)} records in {seconds:.2f} s "
                  f"({len(records) / seconds:,.0f} records/s; {s.cache_hits} hits, {s.calls} calls, "
                  f"{len(failures)} failures): {'PASS' if seconds < TARGET_S else 'FAIL'} (target < {TARGET_S:g} s)")
            cache.close()

        if args.journal_records:
            part = records[:args.journal_records]
            cache = CallCache(cache_path)
            engine = Engine(spec_at(levels[0]), cache)
            t0 = time.perf_counter()
            labeled, _ = label_all(part, engine, prompt, filt, journal=Journal(Path(tmp) / "label.jsonl"))
            seconds = time.perf_counter() - t0
            assert engine.stats.calls == 0 and len(labeled) == len(part)
            print(f"label_all with a fresh journal (the stage's path when only the journal key changed), "
                  f"concurrency {levels[0]}: {len(part)} records in {seconds:.2f} s ({len(part) / seconds:,.0f} "
                  f"records/s, {1000 * seconds / len(part):.2f} ms a record): about {seconds * len(records) / len(part):.0f} s "
                  f"for {len(records)} at that pace")
            cache.close()


if __name__ == "__main__":
    main()
