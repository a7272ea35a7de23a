"""Split labeled records into train / val / test: stratified by tier, seeded, leakage-free.

Records whose subject text is identical (after whitespace and case folding) form one group and go to
one split together, so the test set never contains a copy of a training answer.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict

from distillery.params import SplitParams
from distillery.records import subject_text

SPLITS = ("train", "val", "test")


def _group_key(record: dict) -> str:
    return " ".join(subject_text(record).lower().split())


def stratified_split(records: list[dict], cfg: SplitParams) -> dict[str, list[dict]]:
    total = cfg.train + cfg.val + cfg.test
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split: train + val + test must be 1.0, got {total:g}")
    rng = random.Random(cfg.seed)
    by_text: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_text[_group_key(r)].append(r)
    # Stratify groups, not records: a group goes where its first record's tier says, as one piece.
    groups: dict[str, list[list[dict]]] = defaultdict(list)
    for group in by_text.values():
        groups[group[0]["tier"]].append(group)
    out: dict[str, list[dict]] = {s: [] for s in SPLITS}
    for tier in sorted(groups):
        members = groups[tier]
        rng.shuffle(members)
        n = sum(len(g) for g in members)
        targets = {"train": cfg.train * n, "val": cfg.val * n, "test": cfg.test * n}
        filled = Counter()
        for group in members:
            # Give the group to the split that is furthest below its target share of this tier.
            split = max(SPLITS, key=lambda s: (targets[s] - filled[s], -SPLITS.index(s)))
            out[split].extend(group)
            filled[split] += len(group)
    for s in SPLITS:
        out[s].sort(key=lambda r: r["id"])
    return out


def split_metrics(splits: dict[str, list[dict]]) -> dict:
    sizes = {s: len(rs) for s, rs in splits.items()}
    shares = {}
    for s, rs in splits.items():
        counts = Counter(r["tier"] for r in rs)
        shares[s] = {t: round(c / len(rs), 4) for t, c in sorted(counts.items())} if rs else {}
    seen: dict[str, str] = {}
    leaked = 0
    for s, rs in splits.items():
        for r in rs:
            key = _group_key(r)
            if seen.setdefault(key, s) != s:
                leaked += 1
    return {"sizes": sizes, "tier_shares": shares, "leakage_duplicates_across_splits": leaked}
