"""The filter: dimension scores → weighted score → tier. Computed here, never asked of the oracle."""
from __future__ import annotations

from distillery.params import FilterParams


def weighted_score(labels: dict[str, float], filt: FilterParams) -> float:
    """Weighted mean of the dimensions, capped by any gatekeeper whose dimension is too low."""
    score = sum(labels[name] * dim.weight for name, dim in filt.dimensions.items())
    for gate in filt.gatekeepers:
        if labels[gate.dimension] < gate.below:
            score = min(score, gate.cap)
    return round(score, 4)


def tier_of(score: float, filt: FilterParams) -> str:
    """The first tier (highest minimum first) whose minimum the score reaches."""
    for name, minimum in sorted(filt.tiers.items(), key=lambda kv: -kv[1]):
        if score >= minimum:
            return name
    return min(filt.tiers.items(), key=lambda kv: kv[1])[0]


def tier_order(filt: FilterParams) -> list[str]:
    """Tier names, lowest first."""
    return [name for name, _ in sorted(filt.tiers.items(), key=lambda kv: kv[1])]
