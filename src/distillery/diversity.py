"""Diversity of a set of responses: how much of it is the same few phrases."""
from __future__ import annotations

import re

WORD = re.compile(r"[a-z0-9']+")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def distinct_n(texts: list[str], n: int) -> float:
    """Distinct n-grams / all n-grams over the set (Li et al. 2016): 1.0 means no n-gram repeats."""
    seen, total = set(), 0
    for text in texts:
        w = words(text)
        grams = [tuple(w[i:i + n]) for i in range(len(w) - n + 1)]
        seen.update(grams)
        total += len(grams)
    return round(len(seen) / total, 4) if total else 0.0


def diversity_metrics(texts: list[str]) -> dict:
    return {f"distinct_{n}": distinct_n(texts, n) for n in (1, 2, 3)} | {
        "exact_duplicate_rate": round(1 - len(set(texts)) / len(texts), 4) if texts else 0.0}
