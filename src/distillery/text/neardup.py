"""Near-duplicate responses: MinHash with LSH over word shingles (datasketch), verified on exact Jaccard.

LSH proposes candidate pairs in about linear time; each candidate is checked on the exact Jaccard of
its shingle sets, so a reported pair really is that similar. Pairs are joined into clusters
(union-find): a cluster of 40 rephrasings of one answer is one finding, not 780 pairs.
"""
from __future__ import annotations

from dataclasses import dataclass

from distillery.text.tokens import UnionFind, jaccard, shingles


@dataclass
class NearDuplicates:
    clusters: list[list[int]]  # indices, each cluster in corpus order, clusters by first member
    pairs: list[tuple[int, int]]  # verified pairs (i < j)

    def cluster_of(self, n: int) -> list[int]:
        """For each of n items, the index of the first member of its cluster (itself when alone)."""
        out = list(range(n))
        for cluster in self.clusters:
            for i in cluster:
                out[i] = cluster[0]
        return out


def find_near_duplicates(texts: list[str], *, shingle: int = 3, num_perm: int = 64, threshold: float = 0.8,
                         seed: int | None = 1) -> NearDuplicates:
    from datasketch import MinHash, MinHashLSH

    seed = 1 if seed is None else seed  # None (a params seed not derived yet) must not mean "random permutations"
    sets = [shingles(t, shingle) for t in texts]
    hashes = MinHash.bulk([[s.encode() for s in sh] for sh in sets], num_perm=num_perm, seed=seed)
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    sets_of = UnionFind(len(texts))
    pairs = []
    for j, (mh, sh) in enumerate(zip(hashes, sets)):
        if not sh:
            continue
        for i in lsh.query(mh):  # only earlier items are in the index: each pair is seen once
            if jaccard(sets[i], sh) >= threshold:
                pairs.append((i, j))
                sets_of.union(i, j)
        lsh.insert(j, mh)
    clusters = [g for g in sets_of.groups() if len(g) > 1]
    return NearDuplicates(clusters, sorted(pairs))
