"""detect_templates on 1,000,000 responses, streamed: time and peak memory.

    python bench/templates_stream.py [--n 1000000]

Responses are generated on the fly (distillery.testing.injected.stream_responses: realistic length, 42%
templated, one of the four templates a paraphrase family that drifts by a light edit at every occurrence) and
never held in memory; template_stream reads them three times. Prints, at 10% and 100% of the corpus size
(each in a fresh process), responses per second (and what generating the stream alone costs, three times,
as the detector reads it three times) and the peak resident memory, to show that memory stays flat.
"""
import argparse
import resource
import subprocess
import sys
import time

from distillery.params import TemplateParams
from distillery.testing.injected import stream_responses
from distillery.text.template_stream import detect_streaming


def source(n: int):
    """A re-iterable stream of (id, text, context, topic), the same responses on every read."""
    def stream():
        for i, (text, topic, _) in enumerate(stream_responses(n, seed=0, sentences=(3, 6))):
            yield f"r{i}", text, "", topic
    return stream


def run(n: int) -> None:
    start = time.perf_counter()
    for _ in source(n)():
        pass
    generating = 3 * (time.perf_counter() - start)
    start = time.perf_counter()
    patterns, metrics = detect_streaming(source(n), TemplateParams(min_count=20, min_share=0.02, max_templates=100))
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    family = max((p for p in patterns if p["kind"] == "mined_frame"), key=lambda p: p.get("variant_total", 0))
    print(f"n={n:>9,}  {elapsed:7.1f} s  {n / elapsed:8,.0f} responses/s  "
          f"(generating the stream: {generating:5.1f} s)  peak RSS {peak:6.0f} MB  patterns {len(patterns)}  "
          f"template rate {metrics['template_rate']:.1%}  "
          f"flagged {metrics['flagged']:,}  largest family: {family['variant_total']:,} wordings, "
          f"{len(family['anchors'])} anchors")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--once", action="store_true", help="run n only, in this process")
    args = ap.parse_args()
    if args.once:
        return run(args.n)
    for n in (args.n // 10, args.n):  # each in a fresh process, so each peak RSS is that size's own
        subprocess.run([sys.executable, __file__, "--n", str(n), "--once"], check=True)


if __name__ == "__main__":
    main()
