"""Paraphrase families: sentence frames that say the same stock thing in drifting words.

An LLM writes "I hope this information helps you make the best decision for your needs", then "I hope this
info really helps you to make the right choice…": no wording recurs often enough to count on its own, but
together they are one template. Frames (templates.frame) are compared on their word unigrams and bigrams:

1. candidates: MinHash (30 permutations, numpy) of each frame's word bigrams, cut into 10 bands of 3 rows (LSH).
   A frame is a candidate when one of its bands is shared by at least `min_bucket` responses, so a sentence
   nobody else comes near costs one hash and nothing more; a streamed corpus counts bands in a sketch;
2. links: inside each such bucket every frame is checked against the bucket's most common frame on the exact
   Jaccard of their shingle sets (≥ paraphrase_jaccard); linked frames form families (union-find), and
   families whose cores are alike (≥ family_merge_jaccard, merge_cores) are one: the 2-4 base wordings of
   one stock sentence are further apart than one light edit (the two above: 0.42);
3. a family counts when its members together pass the thresholds, and is not explained by the request
   (a word of the prompt or tool result far more common among its answers than among all answers: a
   greeting the user asked for, a tool result restated, a formula with the user's numbers).

A family is stored with its variants (most common first, with counts) and *anchors*: a few variants such that
every member is within paraphrase_jaccard of one, so FamilyIndex matches all of them, and new drift too.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from distillery.text.sketches import FRAME_CHARS, byte_tokens, ngram_keys
from distillery.text.tokens import UnionFind, stable_hash64

FRAME_TOKEN = re.compile(r"[a-z0-9'{}#]+")  # words and the slots {x} and # (sketches.FRAME_CHARS: the same runs)
# LSH on word bigrams (the verified Jaccard adds unigrams): a family member's nearest fellow member is at bigram
# Jaccard 0.62 (5th percentile) to 0.79 (median); P(candidate) = 1-(1-J^3)^10: 0.93 at 0.62, 0.26 at 0.3.
BANDS, ROWS = 10, 3
SHOWN = 30  # variants kept in patterns.json for a person to read (all are used while mining)
SAMPLES = 32  # contexts kept per frame for the request test
MIN_SAMPLES, SAMPLE_SHARE = 10, 0.5  # the request test needs this many contexts; a word in half of them…


def shingles(tokens: list[str]) -> set:
    return set(tokens).union(zip(tokens, tokens[1:]))


def jaccard_at_least(a: set, b: set, threshold: float) -> bool:
    shared = len(a & b)
    return shared >= threshold * (len(a) + len(b) - shared)


class MinHasher:
    """MinHash signatures and LSH band keys of frames, in bulk (one array pass per permutation)."""

    def __init__(self, seed: int = 1):
        rng = np.random.default_rng(seed)
        self.a = rng.integers(1, 2**63, size=BANDS * ROWS, dtype=np.uint64) | np.uint64(1)
        self.b = rng.integers(0, 2**63, size=BANDS * ROWS, dtype=np.uint64)

    def band_keys(self, frames: list[str]) -> np.ndarray:
        """(len(frames), BANDS) uint64: frames that share a key agree on all ROWS minima of that band."""
        if len(frames) > 20_000:  # in parts: the byte arrays of a batch are ~100x its frames' count
            return np.concatenate([self.band_keys(frames[i:i + 20_000]) for i in range(0, len(frames), 20_000)])
        if not frames:
            return np.zeros((0, BANDS), np.uint64)
        keys, own = frame_bigrams(frames)
        single = np.flatnonzero(np.bincount(own, minlength=len(frames)) == 0)  # one word (or none): the frame
        if len(single):
            alone = np.array([stable_hash64(frames[i]) for i in single.tolist()], dtype=np.uint64)
            keys, own = np.concatenate([keys, alone]), np.concatenate([own, single])
            order = np.argsort(own, kind="stable")
            keys, own = keys[order], own[order]
        starts = np.searchsorted(own, np.arange(len(frames)))
        sig = np.empty((len(frames), BANDS * ROWS), np.uint64)
        buf = np.empty_like(keys)
        with np.errstate(over="ignore"):
            for p in range(BANDS * ROWS):  # in place: one pass over the shingles per permutation
                np.multiply(keys, self.a[p], out=buf)
                np.add(buf, self.b[p], out=buf)
                np.right_shift(buf, np.uint64(32), out=buf)
                sig[:, p] = np.minimum.reduceat(buf, starts)
            out = np.zeros((len(frames), BANDS), np.uint64)
            for r in range(ROWS):
                out = out * np.uint64(0x100000001B3) + sig[:, r::ROWS]
            return out * np.uint64(2 * BANDS + 1) + np.arange(BANDS, dtype=np.uint64)  # one key space per band


def frame_bigrams(frames: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(hashed word bigrams, the frame of each) of all the frames, in one pass of numpy over their bytes."""
    h, (owner,) = byte_tokens("\x00".join(frames), FRAME_CHARS, b"\x00")
    keys, at = ngram_keys(h, owner, 2)
    return keys, owner[at]


def bucket_sizes(keys: np.ndarray, df) -> tuple[np.ndarray, np.ndarray]:
    """(sorted band keys, responses per key) from each distinct frame's keys and document frequency. Frames
    are counted once per response, so a response counts twice only for two of its sentences in one bucket."""
    flat = keys.ravel()
    order = np.argsort(flat, kind="stable")
    flat, weight = flat[order], np.repeat(np.asarray(df, dtype=np.int64), keys.shape[1])[order]
    if not len(flat):
        return flat, weight
    starts = np.flatnonzero(np.r_[True, flat[1:] != flat[:-1]])
    return flat[starts], np.add.reduceat(weight, starts)


class FrameStats:
    """What mining needs of each distinct frame: responses, topics, first sentence and sample contexts."""

    def __init__(self, min_topics: int):
        self.min_topics = min_topics
        self.index: dict[str, int] = {}
        self.frames, self.df, self.topics, self.example, self.samples = [], [], [], [], []

    def add(self, frame: str, sentence: str, topic, sample) -> None:
        i = self.index.get(frame)
        if i is None:
            i = self.index[frame] = len(self.frames)
            self.frames.append(frame)
            self.df.append(0)
            self.topics.append(set())
            self.example.append(sentence)
            self.samples.append([])
        self.df[i] += 1
        if len(self.topics[i]) < self.min_topics:
            self.topics[i].add(topic)
        if len(self.samples[i]) < SAMPLES and sample is not None:
            self.samples[i].append(sample)


def families(stats: FrameStats, keys: np.ndarray, bucket_keys: np.ndarray, bucket_counts: np.ndarray,
             min_bucket: float, threshold: float, merge_threshold: float, min_part: float) -> list[list[int]]:
    """Families of frames (indices into stats, most common first; families by their first member).

    keys: (frames, BANDS) band keys of stats.frames; bucket_keys (sorted) / bucket_counts: responses per band
    key, for at least every key that reaches min_bucket. Frames are linked at `threshold`; then families of
    at least `min_part` responses whose cores are `merge_threshold` alike are joined (merge_cores).
    """
    pos = np.clip(np.searchsorted(bucket_keys, keys), 0, max(0, len(bucket_keys) - 1))
    big = (bucket_keys[pos] == keys) & (bucket_counts[pos] >= min_bucket) if len(bucket_keys) else keys < 0
    df = np.asarray(stats.df, dtype=np.int64)
    order = np.empty(len(df), np.int64)
    order[np.lexsort((np.arange(len(df)), -df))] = np.arange(len(df))  # 0 = most common, ties by first seen
    pairs = set()
    for band in range(BANDS):
        members = np.flatnonzero(big[:, band])
        members = members[np.lexsort((order[members], keys[members, band]))]
        k = keys[members, band]
        head = np.maximum.accumulate(np.where(np.r_[True, k[1:] != k[:-1]], np.arange(len(k)), 0))
        pairs.update(zip(members[head].tolist(), members.tolist()))  # each to its bucket's most common frame
    sets = {}
    links = UnionFind(len(df))
    for i, j in pairs:
        if i != j:
            a = sets.get(i) or sets.setdefault(i, shingles(FRAME_TOKEN.findall(stats.frames[i])))
            b = sets.get(j) or sets.setdefault(j, shingles(FRAME_TOKEN.findall(stats.frames[j])))
            if jaccard_at_least(a, b, threshold):
                links.union(i, j)
    candidates = np.flatnonzero(big.any(axis=1))
    groups = defaultdict(list)
    for i in candidates[np.argsort(order[candidates], kind="stable")].tolist():
        groups[links.find(i)].append(i)
    merged = merge_cores(stats, list(groups.values()), merge_threshold, min_part, threshold)
    return sorted((sorted(g, key=order.__getitem__) for g in merged), key=lambda g: order[g[0]])


def merge_cores(stats: FrameStats, groups: list[list[int]], threshold: float, min_part: float,
                link: float) -> list[list[int]]:
    """Join families with alike cores, so a stock sentence with several base wordings further apart than one
    light edit is one family. A family's parts are its members around each of its anchors (one base wording
    each, with its edits, even when an edit has linked two bases); a part's core is the words and word pairs
    that at least half its responses carry: the base wording, whatever the edits. Two families are one when
    cores of theirs are `threshold` alike. Only parts of min_part responses or more take part: two chance
    look-alikes are not a family's part."""
    owner, cores, postings = [], [], defaultdict(list)
    for k, g in enumerate(groups):
        if sum(stats.df[i] for i in g) < min_part:
            continue
        for part in around_anchors([stats.frames[i] for i in g], link):
            members = [g[j] for j in part]
            total = sum(stats.df[i] for i in members)
            if total < min_part:
                continue
            weight = Counter()
            for i in members:
                for sh in shingles(FRAME_TOKEN.findall(stats.frames[i])):
                    weight[sh] += stats.df[i]
            cores.append({sh for sh, c in weight.items() if 2 * c >= total})
            owner.append(k)
            for sh in cores[-1]:
                if isinstance(sh, tuple):
                    postings[sh].append(len(cores) - 1)
    links = UnionFind(len(groups))
    for p, core in enumerate(cores):
        for q in {q for sh in core if isinstance(sh, tuple) for q in postings[sh] if q > p}:
            if owner[p] != owner[q] and jaccard_at_least(core, cores[q], threshold):
                links.union(owner[p], owner[q])
    return [[i for k in ks for i in groups[k]] for ks in links.groups()]


def around_anchors(variants: list[str], threshold: float) -> list[list[int]]:
    """The variants (indices) near each anchor of anchors_of(variants), each with the first anchor it is near."""
    index = FamilyIndex()
    for k, a in enumerate(anchors_of(variants, threshold)):
        index.add(k, a, threshold)
    parts = defaultdict(list)
    for j, v in enumerate(variants):
        parts[min(index.match(v))].append(j)
    return list(parts.values())


def explained_by_request(samples: list[set], context_df, n_docs: int, lift: float) -> bool:
    """True when one word of the prompt or tool result is in at least half the sampled contexts of a pattern
    and `lift` times more common there than in all contexts: the request, not the writer, made it recur."""
    if lift <= 0 or len(samples) < MIN_SAMPLES or not n_docs:
        return False
    counts = Counter(w for s in samples for w in s)
    need = SAMPLE_SHARE * len(samples)
    return any(c >= need and c / len(samples) >= lift * context_df(w) / n_docs for w, c in counts.items())


class FamilyIndex:
    """Which patterns' anchors a frame is within its pattern's Jaccard threshold of: an exact lookup, then bigram
    postings to find the anchors worth a look, then the exact Jaccard. Deterministic, a few µs per sentence."""

    def __init__(self):
        self.exact: dict[str, list] = defaultdict(list)
        self.postings: dict[tuple, list[int]] = defaultdict(list)
        self.anchors: list[tuple] = []  # (pattern id, shingle set, threshold)
        self.frames: list[tuple] = []  # (anchor frame, pattern id)
        self.bigrams = None  # hashed bigrams of all anchors, for match_all

    def add(self, pid, frame: str, threshold: float) -> None:
        tokens = FRAME_TOKEN.findall(frame)
        self.frames.append((frame, pid))
        self.bigrams = None
        if pid not in self.exact[frame]:
            self.exact[frame].append(pid)
        for bigram in set(zip(tokens, tokens[1:])):
            self.postings[bigram].append(len(self.anchors))
        self.anchors.append((pid, shingles(tokens), threshold))

    def match_all(self, frames: list[str]) -> list[list]:
        """match() of each frame; a frame shares no word bigram with any anchor (a numpy test over all of them
        at once: most sentences) is looked up exactly and no further."""
        if not self.anchors:
            return [[] for _ in frames]
        if len(frames) > 20_000:
            return [m for i in range(0, len(frames), 20_000) for m in self.match_all(frames[i:i + 20_000])]
        if self.bigrams is None:
            self.bigrams = np.unique(frame_bigrams([a for a, _ in self.frames])[0])
        keys, owner = frame_bigrams(frames)
        near = set(owner[np.isin(keys, self.bigrams)].tolist())
        return [self.match(f) if i in near else self.exact.get(f, []) for i, f in enumerate(frames)]

    def match(self, frame: str) -> list:
        if frame in self.exact:
            return self.exact[frame]
        tokens = FRAME_TOKEN.findall(frame)
        post = self.postings
        hits = [k for bigram in zip(tokens, tokens[1:]) if bigram in post for k in post[bigram]]
        if not hits:
            return []
        s, n_uni, out = None, len(set(tokens)), []
        for k, shared_bigrams in Counter(hits).items():  # a repeated bigram counts twice: still an upper bound
            pid, a, threshold = self.anchors[k]
            if pid in out or n_uni + shared_bigrams < threshold * len(a):
                continue  # even sharing every word could not reach the threshold
            s = s if s is not None else shingles(tokens)
            if jaccard_at_least(s, a, threshold):
                out.append(pid)
        return out


def anchors_of(variants: list[str], threshold: float) -> list[str]:
    """A few variants (most common first) such that every variant is within threshold of one of them."""
    index, out = FamilyIndex(), []
    for v in variants:
        if not index.match(v):
            index.add(0, v, threshold)
            out.append(v)
    return out
