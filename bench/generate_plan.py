"""How many coverage rows the scenario planner needs, against the lower bound and three libraries.

    python bench/generate_plan.py [--seed 0]

Two spaces over persona 4, topic 6, city 10, complexity 3, user_style 8, outcome 4 buckets (persona
weighted 0.4/0.3/0.2/0.1, outcome 0.1/0.2/0.4/0.3): all pairs (lower bound 10 × 8 = 80), and all pairs
plus every persona × topic × outcome (lower bound 4 × 6 × 4 = 96). For each it prints our coverage
rows, the time to plan 500 scenarios and the largest TVD of an axis from its weights at 500; then the
rows of covertable, coverwise (best of 5 seeds) and allpairspy (pairs only: it cannot require a
combination), checked for full coverage, where they are installed. Then the same for 5,000 scenarios
over 8 axes of 10 even buckets, where the bound (10 × 10) is out of reach and the greedy steps decide.

The libraries are not dependencies of distillery. To measure them, install them beside it:
    python3 -m venv /tmp/cov && /tmp/cov/bin/pip install covertable coverwise allpairspy
    PYTHONPATH=/tmp/cov/lib/python3.11/site-packages python bench/generate_plan.py
"""
import argparse
import time
from importlib.metadata import version

from distillery.generation.planner import Space, coverage_report, plan
from distillery.testing.spaces import AXES

EVEN = {f"axis{i}": [f"value{j}" for j in range(10)] for i in range(8)}
SPACES = [  # title, axes, combine, scenarios
    ("all pairs", AXES, [], 500),
    ("all pairs + every persona × topic × outcome", AXES, [["persona", "topic", "outcome"]], 500),
    ("8 axes of 10, all pairs", EVEN, [], 5000),
]


def covertable_rows(values: dict, combine: list) -> list[dict]:
    import covertable
    return covertable.make(values, sub_models=[{"fields": g, "strength": len(g)} for g in combine])


def coverwise_rows(values: dict, combine: list) -> list[dict]:
    import coverwise
    sub_models = [{"parameters": g, "strength": len(g)} for g in combine]
    return min((coverwise.generate(parameters=values, strength=2, seed=seed, subModels=sub_models)["tests"]
                for seed in range(5)), key=len)


def allpairspy_rows(values: dict, combine: list) -> list[dict] | None:
    from allpairspy import AllPairs
    return None if combine else [dict(zip(values, row)) for row in AllPairs(list(values.values()))]


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    for title, axes, combine, n in SPACES:
        space = Space.from_params(axes, combine=combine)
        start = time.perf_counter()
        report = plan(space, n, args.seed).report
        elapsed = time.perf_counter() - start
        tvd = max(axis["tvd"] for axis in report["axes"].values())
        print(f"{title} (lower bound {report['lower_bound']})")
        print(f"  distillery: {report['needed_for_coverage']} rows; {n:,} scenarios in {elapsed:.3f} s, "
              f"largest axis TVD at {n:,}: {tvd:.4f}")
        values = {axis.name: [b.name for b in axis.buckets] for axis in space.axes}
        for name, rows_of in [("covertable", covertable_rows), ("coverwise", coverwise_rows),
                              ("allpairspy", allpairspy_rows)]:
            try:
                rows = rows_of(values, combine)
            except ImportError:
                print(f"  {name}: not installed")
                continue
            if rows is None:
                print(f"  {name} {version(name)}: cannot require combinations")
                continue
            lib = coverage_report(space, rows)
            complete = all(r["covered"] == r["total"] for r in [lib["pairwise"], *lib["combine"]])
            print(f"  {name} {version(name)}: {len(rows)} rows{'' if complete else ' (INCOMPLETE coverage)'}")

if __name__ == "__main__":
    main()
