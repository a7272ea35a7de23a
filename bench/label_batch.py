"""label in vendor batches: N records through a loopback OpenAI-style Batch API, as `dvc repro` runs the stage.

    python bench/label_batch.py [--records 100000] [--turnaround 3] [--vendor openai]

The server (distillery.testing.mock_batches) runs in its own process and finishes each batch `--turnaround`
seconds after it is created; the label stage runs as a subprocess (`batch: true`, polled every second), so
its CPU time is the engine's own work outside the server: building the requests and batch lines, the
upload, polling, downloading and parsing the results, caching them, validating every reply, the journal and
the outputs. Printed: wall time, the stage's CPU time per record (target: under 1 ms), its peak memory,
batches, and the server's count of requests submitted (each once).
"""
import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from distillery.records import write_records  # noqa: E402

SERVER = """
import sys, time, json
from distillery.testing.mock_batches import MockBatchAPI
with MockBatchAPI(turnaround_s=float(sys.argv[1])) as api:
    print(api.url, flush=True)
    for line in sys.stdin:
        if line.strip() == "counts":
            print(json.dumps({"batches": api.batches_created, "submitted": len(api.submitted),
                              "max_times": max(api.submitted.values(), default=0)}), flush=True)
        if line.strip() == "stop":
            break
"""
FILTER = {"name": "bench", "dimensions": {"relevance": {"weight": 0.5, "description": "on topic"},
                                          "style": {"weight": 0.3, "description": "not canned"},
                                          "helpfulness": {"weight": 0.2, "description": "useful"}},
          "tiers": {"high": 7.0, "medium": 4.0, "low": 0.0}, "positive_min_score": 4.0}
VENDORS = {"openai": ("openai_compat", "/v1", "OPENAI_API_KEY"), "anthropic": ("anthropic", "", "ANTHROPIC_API_KEY"),
           "mistral": ("mistral", "", "MISTRAL_API_KEY"), "together": ("together", "", "TOGETHER_API_KEY")}


def corpus(n: int) -> list[dict]:
    return [{"id": f"r{i}", "messages": [{"role": "user", "content": f"What should I wear in Oslo on day {i}?"},
                                         {"role": "assistant", "content": f"Bring a coat: {i % 17} degrees and wind."}]}
            for i in range(n)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=100_000)
    ap.add_argument("--turnaround", type=float, default=3.0)
    ap.add_argument("--vendor", choices=sorted(VENDORS), default="openai")
    args = ap.parse_args()
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(args.turnaround)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True, env=env)
    url = server.stdout.readline().strip()
    provider, suffix, key = VENDORS[args.vendor]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        write_records(tmp / "corpus.jsonl", corpus(args.records))
        params = {"base": {"oracle": {"provider": provider, "model": "bench-model", "base_url": url + suffix,
                                      "max_tokens": 100, "batch": True, "batch_poll_s": 1.0},
                           "state_dir": str(tmp / "state"), "prices": {"bench-model": {"input": 3.0, "output": 15.0}}},
                  "filter": FILTER, "label": {"proceed_on_fail": True}}
        (tmp / "params.yaml").write_text(json.dumps(params))
        (tmp / "gate.json").write_text(json.dumps({"verdict": "PASS", "reasons": []}))
        cmd = [sys.executable, str(ROOT / "stages" / "label.py"), "--params", str(tmp / "params.yaml"),
               "--corpus", str(tmp / "corpus.jsonl"), "--gate", str(tmp / "gate.json"),
               "--prompt", str(ROOT / "prompts" / "oracle.md"), "--labeled", str(tmp / "labeled.jsonl"),
               "--failures", str(tmp / "failures.jsonl"), "--metrics", str(tmp / "m.json"),
               "--details", str(tmp / "d.json")]
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        out = subprocess.run(cmd, env={**env, key: "bench-key"}, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if out.returncode:
            sys.exit(f"label failed ({out.returncode}):\n{out.stderr[-3000:]}")
        details = json.loads((tmp / "d.json").read_text())
    server.stdin.write("counts\n")
    server.stdin.flush()
    counts = json.loads(server.stdout.readline())
    server.stdin.write("stop\n")
    server.stdin.flush()
    server.wait()
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    n = args.records
    print(f"vendor {args.vendor}: {n} records, turnaround {args.turnaround:g} s")
    print(f"wall {wall:.1f} s; label stage CPU {cpu:.1f} s = {cpu / n * 1000:.3f} ms per record "
          f"(incl. Python start and imports); peak RSS {after.ru_maxrss / 1024:.0f} MB")
    print(f"labeled {details['labeled']}, failures {details['failures']}, batches {details.get('batches')}, "
          f"cost ${details['cost_usd']:.2f} at the batch price")
    print(f"server: {counts['batches']} batches created, {counts['submitted']} requests submitted, "
          f"each at most {counts['max_times']} time(s)")


if __name__ == "__main__":
    main()
