"""Split labeled records into train / val / test: stratified by tier, seeded, leakage-free.

Records whose subject text is identical (after whitespace and case folding), or that are in one
near-duplicate cluster (neardup.py), form one group and go to one split together, so the test set
never holds a copy or a light rewording of a training answer.
"""
from __future__ import annotations

import random
from collections import Counter, defaultdict

from distillery.params import SplitParams
from distillery.records import subject_text

SPLITS = ("train", "val", "test")


def _group_key(record: dict) -> str:
    return " ".join(subject_text(record).lower().split())


def stratified_split(records: list[dict], cfg: SplitParams, groups_of: list[str] | None = None) -> dict[str, list[dict]]:
    """`groups_of[i]` names record i's group (default: its folded subject text); a group is never split."""
    total = cfg.train + cfg.val + cfg.test
    if abs(total - 1.0) > 1e-6:
        raise ValueError(f"split: train + val + test must be 1.0, got {total:g}")
    rng = random.Random(cfg.seed)
    by_text: dict[str, list[dict]] = defaultdict(list)
    for i, r in enumerate(records):
        by_text[groups_of[i] if groups_of else _group_key(r)].append(r)
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


def near_duplicate_groups(records: list[dict], div) -> tuple[list[str], list[tuple[str, str]]]:
    """(group name per record, near-duplicate id pairs): exact copies and near-duplicate clusters."""
    from distillery.text.neardup import find_near_duplicates

    texts = [subject_text(r) for r in records]
    near = find_near_duplicates(texts, shingle=div.shingle, num_perm=div.num_perm, threshold=div.threshold,
                                seed=div.seed)
    first = near.cluster_of(len(records))
    clustered = {i for c in near.clusters for i in c}
    # Exact copies are near-duplicates too, except texts too short to shingle: those join by their text.
    by_text: dict[str, str] = {}
    groups = [by_text.setdefault(_group_key(r), f"near:{first[i]}" if i in clustered else _group_key(r))
              for i, r in enumerate(records)]
    return groups, [(records[i]["id"], records[j]["id"]) for i, j in near.pairs]


def split_metrics(splits: dict[str, list[dict]], near_pairs: list[tuple[str, str]] = ()) -> dict:
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
    where = {r["id"]: s for s, rs in splits.items() for r in rs}
    crossing = sum(where[a] != where[b] for a, b in near_pairs)
    return {"sizes": sizes, "tier_shares": shares, "leakage_duplicates_across_splits": leaked,
            "near_duplicate_pairs": len(near_pairs), "near_duplicate_pairs_across_splits": crossing}
