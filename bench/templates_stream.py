"""detect_templates on 1,000,000 responses, streamed: time and peak memory.

    python bench/templates_stream.py [--n 1000000]

Responses are generated on the fly (distillery.testing.injected, realistic length, 42% templated) and never
held in memory; template_stream reads them three times. Prints responses per second and the peak
resident memory at 10% and 100% of the corpus size, to show that memory stays flat.
"""
import argparse
import resource
import time

from distillery.testing.injected import make_responses
from distillery.params import TemplateParams
from distillery.text.template_stream import detect_streaming


def source(n: int, chunk: int = 10_000):
    """A re-iterable stream of (id, text, context, topic): chunks are generated with their own seeds."""
    def stream():
        for start in range(0, n, chunk):
            texts, topics, _ = make_responses(min(chunk, n - start), seed=start, sentences=(3, 6))
            for i, (t, tp) in enumerate(zip(texts, topics)):
                yield f"r{start + i}", t, "", tp
    return stream


def run(n: int) -> None:
    start = time.perf_counter()
    patterns, metrics = detect_streaming(source(n), TemplateParams(min_count=20, min_share=0.02, max_templates=100))
    elapsed = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"n={n:>9,}  {elapsed:7.1f} s  {n / elapsed:8,.0f} responses/s  peak RSS {peak:6.0f} MB  "
          f"patterns {len(patterns)}  template rate {metrics['template_rate']:.1%}  flagged {metrics['flagged']:,}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    args = ap.parse_args()
    for n in (args.n // 10, args.n):  # peak RSS only grows: flat means the two agree
        run(n)


if __name__ == "__main__":
    main()
