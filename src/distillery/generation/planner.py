"""Plan synthetic scenarios over a parameter space: coverage first, then each axis's target frequencies.

    space = Space.from_params({"persona": ["ana", "ben", "cy"],
                               "outcome": {"failed": {"weight": 0.1, "range": [0.0, 0.3]},
                                           "excellent": {"weight": 0.9, "range": [0.8, 1.0]}}},
                              pairwise=True, combine=[["persona", "outcome"]])
    result = plan(space, n=500, seed=0)
    result.rows[0]   # {"id": "scn-0001", "persona": "cy", "outcome": "failed", "outcome_value": 0.2167...}
    result.report    # each requirement's cells covered / total, and target vs achieved per axis

A pure function of (space, n, seed), in two phases:

1. Coverage rows, as few as it finds. The full product of the largest required group (a `combine`
   group, or the two largest axes under `pairwise`) is the skeleton: no plan can be shorter than it.
   The other axes are then added one at a time (IPOG): each row takes the value that completes the
   most uncovered cells, and a cell still uncovered is written where that uncovers nothing, else into
   a new row. A cell that would complete nothing stays free. Best of ATTEMPTS seeded tries. Then
   `min_per_bucket` is met in free cells, then in new rows.
2. The other n - needed rows, and the free cells of the coverage rows, by quota: each axis's target
   count per bucket is weight × n (largest remainder); the values still owed after coverage are
   shuffled and dealt out, so an axis lands on its quota unless coverage alone overshoots one. Values
   are then swapped between these rows (counts unchanged) so that no full combination repeats.

When coverage needs more than n rows, `plan` raises a ValueError that says how many: dropping
coverage, or returning more scenarios than asked for, would each surprise someone downstream.
"""
from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from dataclasses import dataclass

from distillery.params import ParamsError

ATTEMPTS = 10  # seeded tries at the coverage rows, keeping the shortest; ~10 ms each on 6 axes of <= 10
GAP_LIMIT = 20  # uncovered cells listed per requirement in the report


@dataclass(frozen=True)
class Bucket:
    name: str
    weight: float = 1.0  # relative to the other buckets of its axis
    range: tuple[float, float] | None = None  # a row in this bucket gets a seeded `<axis>_value` in [lo, hi]


@dataclass(frozen=True)
class Axis:
    name: str
    buckets: tuple[Bucket, ...]

    def __post_init__(self):
        names = [b.name for b in self.buckets]
        if not names:
            raise ParamsError(f"axes.{self.name}: no buckets")
        for b in self.buckets:
            if names.count(b.name) > 1:
                raise ParamsError(f"axes.{self.name}: bucket {b.name!r} appears twice")
            if not (isinstance(b.weight, (int, float)) and 0 <= b.weight < math.inf):
                raise ParamsError(f"axes.{self.name}.{b.name}: weight must be a number >= 0, got {b.weight!r}")
            if b.range is not None and not _is_range(b.range):
                raise ParamsError(f"axes.{self.name}.{b.name}: range must be [lo, hi] with lo <= hi, got {b.range!r}")
        if sum(b.weight for b in self.buckets) <= 0:
            raise ParamsError(f"axes.{self.name}: the weights sum to 0")

    @property
    def targets(self) -> list[float]:
        """Each bucket's target frequency: its weight over the axis's total."""
        total = sum(b.weight for b in self.buckets)
        return [b.weight / total for b in self.buckets]


def _is_range(value) -> bool:
    return (isinstance(value, tuple) and len(value) == 2 and all(isinstance(x, (int, float)) for x in value)
            and value[0] <= value[1])


@dataclass(frozen=True)
class Space:
    axes: tuple[Axis, ...]
    min_per_bucket: int = 0  # each bucket of each axis appears at least this often
    pairwise: bool = True  # each pair of buckets of two different axes appears at least once
    combine: tuple[tuple[str, ...], ...] = ()  # each combination of these axes' buckets appears at least once

    def __post_init__(self):
        names = [a.name for a in self.axes]
        if not names:
            raise ParamsError("axes: at least one axis is required")
        for name in names:
            if names.count(name) > 1:
                raise ParamsError(f"axes: {name!r} appears twice")
            if name == "id" or (name.endswith("_value") and name.removesuffix("_value") in names):
                raise ParamsError(f"axes.{name}: the name clashes with a scenario's own keys (id, <axis>_value)")
        for group in self.combine:
            unknown = [name for name in group if name not in names]
            if unknown:
                raise ParamsError(f"combine: unknown axis {unknown[0]!r} (axes: {', '.join(names)})")
            if not group or len(set(group)) < len(group):
                raise ParamsError(f"combine: {list(group)} must name distinct axes")
        if self.min_per_bucket < 0:
            raise ParamsError(f"min_per_bucket must be >= 0, got {self.min_per_bucket}")

    @classmethod
    def from_params(cls, axes: dict, min_per_bucket: int = 0, pairwise: bool = True,
                    combine: list[list[str]] | tuple = ()) -> Space:
        """A space as params.yaml writes it. Each axis is a list of buckets (uniform), a mapping
        {bucket: weight}, or {bucket: {weight: w, range: [lo, hi]}}; give every bucket of an axis a
        weight or none (then uniform). Weights are relative: they need not sum to 1."""
        return cls(tuple(_axis(name, spec) for name, spec in axes.items()), min_per_bucket, pairwise,
                   tuple(tuple(group) for group in combine))


def _axis(name: str, spec: list | dict) -> Axis:
    if isinstance(spec, list):
        return Axis(name, tuple(Bucket(str(b)) for b in spec))
    if not isinstance(spec, dict):
        raise ParamsError(f"axes.{name}: expected a list of buckets or a mapping, got {spec!r}")
    fields = {str(b): value if isinstance(value, dict) else {"weight": value} for b, value in spec.items()}
    for bucket, given in fields.items():
        unknown = sorted(set(given) - {"weight", "range"})
        if unknown:
            raise ParamsError(f"axes.{name}.{bucket}: unknown key {unknown[0]!r} (known: range, weight)")
    if len({given.get("weight") is None for given in fields.values()}) > 1:
        raise ParamsError(f"axes.{name}: give every bucket a weight, or none (uniform)")
    return Axis(name, tuple(
        Bucket(bucket, 1.0 if given.get("weight") is None else given["weight"],
               tuple(given["range"]) if isinstance(given.get("range"), list) else given.get("range"))
        for bucket, given in fields.items()))


@dataclass(frozen=True)
class Plan:
    rows: list[dict]  # {"id": "scn-0001", <axis>: <bucket>, ..., "<axis>_value": x where the bucket has a range}
    report: dict  # JSON-ready: scenarios, needed_for_coverage, lower_bound, each requirement, each axis


def plan(space: Space, n: int | None, seed: int) -> Plan:
    """n scenarios: the coverage rows first, then the rows filled by quota; n None: the coverage rows only.

    Raises ValueError when the coverage requirements alone need more than n scenarios."""
    if n is not None and n < 0:
        raise ValueError(f"scenarios must be >= 0, got {n}")
    rng = random.Random(seed)
    sizes = [len(axis.buckets) for axis in space.axes]
    groups = _groups(space)
    rows = _coverage_rows(sizes, groups, rng)
    _top_up(rows, sizes, space.min_per_bucket)
    needed = len(rows)
    n = needed if n is None else n
    if needed > n:
        raise ValueError(f"coverage needs {needed} scenarios but scenarios is {n}: raise scenarios to at least "
                         f"{needed}, or ask for less coverage (pairwise, combine, min_per_bucket)")
    rows += [[None] * len(sizes) for _ in range(n - needed)]
    _fill_by_quota(rows, space, rng)
    _spread(rows, needed, rng)
    width = max(4, len(str(n)))
    scenarios = [_scenario(space, row, f"scn-{i:0{width}d}", seed) for i, row in enumerate(rows, 1)]
    bound = max([math.prod(sizes[a] for a in g) for g in groups] + [space.min_per_bucket * max(sizes)])
    report = {"scenarios": n, "seed": seed, "needed_for_coverage": needed, "lower_bound": bound}
    return Plan(scenarios, report | coverage_report(space, scenarios))


def _groups(space: Space) -> list[tuple[int, ...]]:
    """The groups of axes (as indices) whose every combination of buckets must appear."""
    index = {axis.name: i for i, axis in enumerate(space.axes)}
    groups = [tuple(sorted(index[name] for name in group)) for group in space.combine]
    if space.pairwise:
        groups += itertools.combinations(range(len(space.axes)), 2)
    return list(dict.fromkeys(groups))


class _Tally:
    """How many rows hold each cell (a combination of values) of each required group of axes."""

    def __init__(self, sizes: list[int], groups: list[tuple[int, ...]]):
        self.sizes, self.groups = sizes, groups
        self.counts = [dict.fromkeys(itertools.product(*(range(sizes[a]) for a in g)), 0) for g in groups]
        self.through = [[k for k, g in enumerate(groups) if a in g] for a in range(len(sizes))]

    def cells(self, row: list, axes):
        """(group, cell) of each group through `axes` that `row` fills completely."""
        for k in {k for a in axes for k in self.through[a]}:
            if None not in (cell := tuple(row[a] for a in self.groups[k])):
                yield k, cell

    def add(self, row: list, axes, step: int = 1):
        for k, cell in self.cells(row, axes):
            self.counts[k][cell] += step

    def gain(self, row: list, axis: int, value: int) -> int:
        """How many uncovered cells setting the free row[axis] to `value` would cover."""
        row[axis] = value
        gained = sum(self.counts[k][cell] == 0 for k, cell in self.cells(row, [axis]))
        row[axis] = None
        return gained

    def spare(self, row: list, axis: int) -> bool:
        """Whether changing row[axis] uncovers nothing: every cell it completes is held by another row too."""
        return all(self.counts[k][cell] > 1 for k, cell in self.cells(row, [axis]))

    def missing(self, within: set[int]):
        """(group, cell) of each cell not yet covered, among the groups whose axes are all in `within`."""
        for k, group in enumerate(self.groups):
            if set(group) <= within:
                yield from ((group, cell) for cell, count in self.counts[k].items() if count == 0)


def _coverage_rows(sizes: list[int], groups: list[tuple[int, ...]], rng: random.Random) -> list[list]:
    """Rows holding every cell of every group (None marks a free cell): the shortest of ATTEMPTS tries."""
    if not groups:
        return []
    bound = max(math.prod(sizes[a] for a in g) for g in groups)
    best = _grow(sizes, groups, rng)
    for _ in range(ATTEMPTS - 1):
        if len(best) == bound:
            break
        best = min(best, _grow(sizes, groups, rng), key=len)
    return best


def _grow(sizes: list[int], groups: list[tuple[int, ...]], rng: random.Random) -> list[list]:
    tally = _Tally(sizes, groups)
    skeleton = max(groups, key=lambda g: math.prod(sizes[a] for a in g))
    rows = []
    for values in itertools.product(*(range(sizes[a]) for a in skeleton)):
        row = [None] * len(sizes)
        for a, v in zip(skeleton, values):
            row[a] = v
        tally.add(row, skeleton)
        rows.append(row)
    rng.shuffle(rows)
    done = set(skeleton)
    for axis in sorted(set(range(len(sizes))) - done, key=lambda a: -sizes[a]):
        done.add(axis)
        for row in rows:  # horizontal growth: the value covering most, ties at random; none if it covers nothing
            gain, _, value = max((tally.gain(row, axis, v), rng.random(), v) for v in range(sizes[axis]))
            if gain:
                row[axis] = value
                tally.add(row, [axis])
        for group, cell in tally.missing(done):  # vertical growth
            _place(rows, tally, group, cell)
    return rows


def _place(rows: list[list], tally: _Tally, group: tuple[int, ...], cell: tuple):
    """Write an uncovered cell into the row where that changes fewest values without uncovering
    anything (free cells cost nothing), or into a new row."""
    best, best_cost = None, len(group) + 1
    for row in rows:
        changes = [a for a, v in zip(group, cell) if row[a] is not None and row[a] != v]
        if len(changes) < best_cost and all(tally.spare(row, a) for a in changes):
            best, best_cost = row, len(changes)
            if not changes:
                break
    if best is None:
        best = [None] * len(tally.sizes)
        rows.append(best)
    tally.add(best, group, -1)
    for a, v in zip(group, cell):
        best[a] = v
    tally.add(best, group)


def _top_up(rows: list[list], sizes: list[int], minimum: int):
    """Make each value of each axis appear `minimum` times: in free cells first, then in new rows."""
    for a, size in enumerate(sizes):
        held = Counter(row[a] for row in rows)
        owed = [v for v in range(size) for _ in range(minimum - held[v])]
        free = [row for row in rows if row[a] is None]
        new = [[None] * len(sizes) for _ in range(len(owed) - len(free))]
        rows += new
        for row, v in zip(free + new, owed):
            row[a] = v


def _fill_by_quota(rows: list[list], space: Space, rng: random.Random):
    """Deal each axis's owed values (its quota of len(rows) less what is placed) into its free cells.
    There are at least as many owed values as free cells, so every free cell gets one."""
    for a, axis in enumerate(space.axes):
        held = Counter(row[a] for row in rows)
        owed = [v for v, quota in enumerate(_quotas(axis.targets, len(rows))) for _ in range(quota - held[v])]
        rng.shuffle(owed)
        for row, v in zip([row for row in rows if row[a] is None], owed):
            row[a] = v


def _quotas(shares: list[float], n: int) -> list[int]:
    """Whole counts summing to n, nearest to shares × n (largest remainder)."""
    exact = [s * n for s in shares]
    counts = [math.floor(x) for x in exact]
    for v in sorted(range(len(shares)), key=lambda v: counts[v] - exact[v])[: n - sum(counts)]:
        counts[v] += 1
    return counts


def _spread(rows: list[list], start: int, rng: random.Random, tries: int = 50):
    """Swap one axis's values between two rows from `start` on while a full combination repeats; a
    swap is kept only when both new rows are unseen. Swaps leave each axis's counts as they were."""
    seen = Counter(map(tuple, rows))
    for i in range(start, len(rows)):
        for _ in range(tries):
            if seen[tuple(rows[i])] == 1:
                break
            j, a = rng.randrange(start, len(rows)), rng.randrange(len(rows[i]))
            before = [tuple(rows[i]), tuple(rows[j])]
            rows[i][a], rows[j][a] = rows[j][a], rows[i][a]
            after = [tuple(rows[i]), tuple(rows[j])]
            if seen[after[0]] or seen[after[1]]:
                rows[i][a], rows[j][a] = rows[j][a], rows[i][a]
            else:
                seen.subtract(before)
                seen.update(after)


def _scenario(space: Space, row: list[int], scenario_id: str, seed: int) -> dict:
    scenario = {"id": scenario_id}
    for axis, v in zip(space.axes, row):
        bucket = axis.buckets[v]
        scenario[axis.name] = bucket.name
        if bucket.range is not None:  # seeded by row and axis, so a value does not move when others do
            rng = random.Random(f"{seed}:{scenario_id}:{axis.name}")
            scenario[f"{axis.name}_value"] = rng.uniform(*bucket.range)
    return scenario


def coverage_report(space: Space, rows: list[dict]) -> dict:
    """What `rows` (scenarios, from any planner) cover of the space's requirements, and per axis the
    target vs achieved frequency of each bucket and their total variation distance (tvd)."""
    buckets = {axis.name: [b.name for b in axis.buckets] for axis in space.axes}
    held = {name: Counter(row[name] for row in rows) for name in buckets}
    short = [{"axis": name, "bucket": b, "count": held[name][b]}
             for name, names in buckets.items() for b in names if held[name][b] < space.min_per_bucket]
    total = sum(map(len, buckets.values()))
    report = {"min_per_bucket": {"min": space.min_per_bucket, "covered": total - len(short), "total": total,
                                 "gaps": short[:GAP_LIMIT]},
              "combine": [{"axes": list(group), **_cells(buckets, rows, [group])} for group in space.combine]}
    if space.pairwise:
        report["pairwise"] = _cells(buckets, rows, list(itertools.combinations(buckets, 2)))
    report["axes"] = {}
    for axis in space.axes:
        achieved = [held[axis.name][b.name] / len(rows) if rows else 0.0 for b in axis.buckets]
        report["axes"][axis.name] = {
            "tvd": round(sum(abs(t - x) for t, x in zip(axis.targets, achieved)) / 2, 4),
            "buckets": {b.name: {"target": round(t, 4), "achieved": round(x, 4)}
                        for b, t, x in zip(axis.buckets, axis.targets, achieved)}}
    return report


def _cells(buckets: dict[str, list[str]], rows: list[dict], groups: list[tuple[str, ...]]) -> dict:
    """Covered / total combinations over `groups` of axis names, and the first GAP_LIMIT missing."""
    covered, total, gaps = 0, 0, []
    for group in groups:
        seen = {tuple(row[name] for name in group) for row in rows}
        for cell in itertools.product(*(buckets[name] for name in group)):
            total += 1
            if cell in seen:
                covered += 1
            elif len(gaps) < GAP_LIMIT:
                gaps.append(dict(zip(group, cell)))
    return {"covered": covered, "total": total, "gaps": gaps}
