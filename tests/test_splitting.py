from collections import Counter

import pytest

from distillery.params import SplitParams
from distillery.training.splitting import split_metrics, stratified_split
from tests.conftest import conversation


def records():
    out = []
    for i in range(200):
        r = conversation(f"r{i:03d}", f"Unique answer {i}.")
        r["tier"] = "high" if i % 4 == 0 else "low"
        out.append(r)
    for i in range(6):  # six copies of one answer: must land in one split
        r = conversation(f"dup{i}", "The same copied answer.")
        r["tier"] = "low"
        out.append(r)
    return out


def test_sizes_follow_ratios_and_tiers_are_stratified():
    splits = stratified_split(records(), SplitParams(seed=1))
    sizes = {k: len(v) for k, v in splits.items()}
    assert sum(sizes.values()) == 206
    assert 140 <= sizes["train"] <= 150 and 27 <= sizes["val"] <= 35 and 27 <= sizes["test"] <= 35
    for rs in splits.values():
        share = Counter(r["tier"] for r in rs)["high"] / len(rs)
        assert 0.18 <= share <= 0.32  # the corpus is 24% high


def test_duplicates_stay_together_and_leakage_is_zero():
    splits = stratified_split(records(), SplitParams(seed=3))
    homes = {name for name, rs in splits.items() for r in rs if r["id"].startswith("dup")}
    assert len(homes) == 1
    assert split_metrics(splits)["leakage_duplicates_across_splits"] == 0


def test_seed_decides_the_split():
    a = stratified_split(records(), SplitParams(seed=1))
    b = stratified_split(records(), SplitParams(seed=1))
    c = stratified_split(records(), SplitParams(seed=2))
    ids = lambda s: [r["id"] for r in s["test"]]  # noqa: E731
    assert ids(a) == ids(b) and ids(a) != ids(c)


def test_ratios_must_sum_to_one():
    with pytest.raises(ValueError, match="must be 1.0"):
        stratified_split(records(), SplitParams(train=0.8, val=0.2, test=0.2))


def test_near_duplicate_clusters_stay_in_one_split():
    from distillery.params import DiversityParams
    from distillery.training.splitting import near_duplicate_groups

    recs = records()
    for i in range(8):  # eight light rewordings of one long answer
        r = conversation(f"near{i}", "Expect light rain in Lisbon this afternoon with a gentle breeze from the "
                                     f"west and temperatures around {18 + i} degrees so bring a jacket.")
        r["tier"] = "high"
        recs.append(r)
    groups, pairs = near_duplicate_groups(recs, DiversityParams(threshold=0.6))
    assert len({groups[i] for i, r in enumerate(recs) if r["id"].startswith("near")}) == 1
    assert len(pairs) >= 7
    splits = stratified_split(recs, SplitParams(seed=5), groups)
    homes = {name for name, rs in splits.items() for r in rs if r["id"].startswith("near")}
    assert len(homes) == 1
    m = split_metrics(splits, pairs)
    assert m["near_duplicate_pairs_across_splits"] == 0 and m["leakage_duplicates_across_splits"] == 0
    # Without the groups, the same records do cross splits: the test can fail.
    naive = stratified_split(recs, SplitParams(seed=5))
    assert split_metrics(naive, pairs)["near_duplicate_pairs_across_splits"] > 0
