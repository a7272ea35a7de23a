"""generate against a loopback OpenAI-compatible API: calls and tokens per accepted conversation with
`per_call` 1 vs 5, and throughput against a rate limit as a share of that limit.

    python bench/generate_calls.py [--scenarios 100] [--rps 20] [--latency 0.2] [--concurrency 8]

The server (distillery.testing.mock_api) writes briefs for every scenario it is asked about and plays
a tool-using model: it calls a tool, then answers from the result; the tools run for real against the
demo's SQLite world. Both runs plan the same scenarios (the demo's axes, `--scenarios` of them) and each
starts from an empty cache. The throughput run allows `--rps` requests a second (429 past it) and
tells the engine the same limit; it prints requests answered per second over the whole run / rps.
"""
import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distillery.engine.cache import CallCache  # noqa: E402
from distillery.engine.engine import Engine  # noqa: E402
from distillery.generation.conversation import Gate, Prompt, generate_conversations, write_briefs  # noqa: E402
from distillery.generation.planner import Space, plan  # noqa: E402
from distillery.generation.tools import Database, load_tools  # noqa: E402
from distillery.params import GenerateParams, ModelSpec, load_params  # noqa: E402
from distillery.testing.mock_api import MockAPI  # noqa: E402


def run(scenarios: int, per_call: int, api, rps: float | None, concurrency: int) -> dict:
    params = load_params(ROOT / "params.yaml")
    shipped = params.generate
    cfg = GenerateParams(**{**vars(shipped), "per_call": per_call, "scenarios": scenarios})
    rows = plan(Space.from_params(cfg.axes, cfg.min_per_bucket, cfg.pairwise, [tuple(g) for g in cfg.combine]),
                scenarios, 1).rows
    spec = ModelSpec(provider="openai_compat", model="bench", base_url=api.url + "/v1", concurrency=concurrency,
                     rpm=rps * 60 if rps else None, timeout_s=10)
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(spec, CallCache(Path(tmp) / "cache.sqlite"), max_retries=4, backoff_s=0.2)
        tools, world = load_tools(ROOT / "data/raw/tools.json"), Database(ROOT / "data/raw/world.sql")
        prompts = {n: Prompt(ROOT / "prompts" / f"generate_{n}.md") for n in ("brief", "opening", "document", "assistant", "user")}
        start, before = time.perf_counter(), api.requests
        briefs, _, counts = write_briefs(rows, engine, prompts, tools, cfg, lambda r: r["id"])
        records, failures, _ = generate_conversations(rows, briefs, lambda r: r["id"], engine, engine, tools, world,
                                                      prompts, cfg, Gate([], params.diversity))
        wall = time.perf_counter() - start
    s = engine.stats
    return {"accepted": len(records), "failed": len(failures), "calls": s.calls, "wall_s": wall,
            "brief_calls": counts["brief_calls"],
            "requests": api.requests - before, "tokens": s.input_tokens + s.output_tokens}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenarios", type=int, default=100)
    ap.add_argument("--rps", type=float, default=20)
    ap.add_argument("--latency", type=float, default=0.2)
    ap.add_argument("--concurrency", type=int, default=8)
    args = ap.parse_args()

    with MockAPI(latency_s=args.latency) as api:
        one, five = (run(args.scenarios, k, api, None, args.concurrency) for k in (1, 5))
    for name, r in (("per_call 1", one), ("per_call 5", five)):
        print(f"{name}: {r['accepted']}/{args.scenarios} accepted, {r['calls'] / max(1, r['accepted']):.2f} calls and "
              f"{r['tokens'] / max(1, r['accepted']):.0f} tokens per accepted conversation")
    print(f"per_call 5 vs 1: {1 - five['brief_calls'] / one['brief_calls']:.0%} fewer brief calls "
          f"({one['brief_calls']} vs {five['brief_calls']}); over the whole run {1 - five['calls'] / one['calls']:.0%} "
          f"fewer calls, {1 - five['tokens'] / one['tokens']:.0%} fewer tokens (the tool loop is per conversation)")

    with MockAPI(latency_s=args.latency, rps=args.rps) as api:
        r = run(args.scenarios, 5, api, args.rps, args.concurrency)
    answered = r["calls"] / r["wall_s"]
    print(f"throughput at {args.rps:g} rps allowed: {answered:.1f} answered/s = {answered / args.rps:.3f} of the limit "
          f"({r['requests']} requests, {r['requests'] - r['calls']} refused or retried, {r['wall_s']:.1f} s)")


if __name__ == "__main__":
    main()
