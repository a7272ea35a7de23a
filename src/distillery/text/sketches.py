"""Hashing and sketches in numpy, for corpora read as a stream: token hashes, n-gram keys, count-min, HyperLogLog.

The words of a whole chunk of responses are hashed at once from its bytes (byte_tokens: no Python string
per word), and an n-gram's key is a polynomial over its words' hashes: a few array operations per chunk
instead of a Python call per n-gram, and the same keys in every process (no salted hash()).
"""
from __future__ import annotations

import numpy as np

MIX = np.uint64(0x9E3779B97F4A7C15)  # odd: multiplying by it permutes 64-bit values


def _chars(chars: bytes) -> np.ndarray:
    table = np.zeros(256, dtype=bool)
    table[list(chars)] = True
    return table


WORD_CHARS = _chars(b"abcdefghijklmnopqrstuvwxyz0123456789'")  # tokens.WORD, on lower-cased text
FRAME_CHARS = _chars(b"abcdefghijklmnopqrstuvwxyz0123456789'{}#")  # and the slots {x} and # of a frame
POWERS = np.cumprod(np.full(64, 0x100000001B3, dtype=np.uint64))  # one per position in a token (mod 64)


def byte_tokens(text: str, chars: np.ndarray, separators: bytes = b"") -> tuple[np.ndarray, list[np.ndarray]]:
    """(hash of each token, [for each separator byte, how many precede the token]) of a long string, with no
    Python object per token: a token is a run of `chars` bytes (UTF-8 bytes above 127 separate tokens, as
    non-ASCII characters do for tokens.WORD), hashed as a polynomial over its bytes. Separators (\\x00, \\x01
    between sentences and responses) give each token its sentence and response."""
    b = np.frombuffer(text.encode(), dtype=np.uint8)
    inside = chars[b]
    edge = np.diff(inside.view(np.int8), prepend=np.int8(0), append=np.int8(0))
    starts, ends = np.flatnonzero(edge == 1), np.flatnonzero(edge == -1)
    if not len(starts):
        return np.zeros(0, np.uint64), [np.zeros(0, np.int64) for _ in separators]
    length = ends - starts
    first = np.cumsum(length) - length  # where each token begins among the token bytes
    position = np.arange(int(length.sum())) - np.repeat(first, length)
    with np.errstate(over="ignore"):
        value = (b[inside].astype(np.uint64) + np.uint64(1)) * POWERS[position & 63]
        hashes = np.add.reduceat(value, first)
        hashes = (hashes ^ (hashes >> np.uint64(31))) * MIX  # spread the bits: keys are cut by their high bits
    return hashes, [np.searchsorted(np.flatnonzero(b == sep), starts) for sep in separators]


def ngram_keys(hashes: np.ndarray, owner: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(keys, start positions) of every n-gram of consecutive tokens with the same owner (a response or a
    sentence): key = h[i]·M^(n-1) + … + h[i+n-1], wrapping at 2^64, so equal n-grams get equal keys."""
    if len(hashes) < n:
        return np.zeros(0, np.uint64), np.zeros(0, np.int64)
    keys = hashes[: len(hashes) - n + 1].copy()
    with np.errstate(over="ignore"):
        for k in range(1, n):
            keys = keys * MIX + hashes[k: len(hashes) - n + 1 + k]
    starts = np.flatnonzero(owner[: len(owner) - n + 1] == owner[n - 1:])
    return keys[starts], starts


def unique_sorted(a: np.ndarray, counts: bool = False):
    """np.unique by sort and compare (numpy's own is several times slower on 64-bit keys)."""
    s = np.sort(a)
    first = np.ones(len(s), dtype=bool)
    first[1:] = s[1:] != s[:-1]
    if not counts:
        return s[first]
    starts = np.flatnonzero(first)
    return s[starts], np.diff(np.append(starts, len(s)))


def per_owner_unique(keys: np.ndarray, owner: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(keys, owners) with each key kept once per owner: a document frequency counts a response once.

    One sort of key ^ hash(owner) finds the (rare) repeats; only those are looked at again."""
    if not len(keys):
        return keys, owner
    with np.errstate(over="ignore"):
        pair = keys ^ (owner.astype(np.uint64) * MIX)
    s = np.sort(pair)
    repeats = s[1:][s[1:] == s[:-1]]
    if not len(repeats):
        return keys, owner
    again = np.flatnonzero(np.isin(pair, repeats))
    _, first = np.unique(pair[again], return_index=True)
    keep = np.ones(len(keys), dtype=bool)
    keep[again] = False
    keep[again[first]] = True
    return keys[keep], owner[keep]


class CountMin:
    """Count-min sketch: an estimate never below the true count, so a threshold on it misses nothing.

    Keys are added in batches of ~1M: one np.bincount over the row's width per batch, ~10x faster than
    np.add.at, whose cost is per key."""

    def __init__(self, width_bits: int = 22, depth: int = 2, seed: int = 7, batch: int = 1 << 20):
        rng = np.random.default_rng(seed)
        self.width, self.batch = 1 << width_bits, batch
        self.table = np.zeros((depth, self.width), dtype=np.uint32)
        self.mul = rng.integers(1, 2**63, size=depth, dtype=np.uint64) | np.uint64(1)
        self.shift = np.uint64(64 - width_bits)
        self.pending, self.n_pending = [], 0

    def _rows(self, keys: np.ndarray):
        with np.errstate(over="ignore"):
            return [((keys * m) >> self.shift).astype(np.int64) for m in self.mul]  # multiply-shift hashing

    def add(self, keys: np.ndarray) -> None:
        self.pending.append(keys)
        self.n_pending += len(keys)
        if self.n_pending >= self.batch:
            self.flush()

    def flush(self) -> None:
        if self.n_pending:
            keys = np.concatenate(self.pending)
            for row, idx in zip(self.table, self._rows(keys)):
                row += np.bincount(idx, minlength=self.width).astype(np.uint32)
        self.pending, self.n_pending = [], 0

    def estimate(self, keys: np.ndarray) -> np.ndarray:
        self.flush()
        if not len(keys):
            return np.zeros(0, np.uint32)
        return np.min([row[idx] for row, idx in zip(self.table, self._rows(keys))], axis=0)


class RepeatShare:
    """Self-repetition: the share of each response's distinct n-grams that some other response has too.

    1 - share = (n-grams found in one response only) / (all (response, n-gram) pairs). The pairs are counted
    as they stream by; the n-grams of one response only are counted exactly on a hash sample of the
    n-grams (those whose mixed key is at most `cut`, halved whenever more than `budget` are kept) and scaled
    up by the sample's rate. They are many and each counts once, so the sample is tight (a share of
    occurrences sampled by n-gram would not be: a few template n-grams carry most repeats). Memory stays
    under the budget; a count-min sketch cannot say "seen twice" past ~10^5 responses (every cell full)."""

    def __init__(self, budget: int = 1 << 19):
        self.budget, self.cut = budget, np.uint64(2**64 - 1)
        self.keys, self.df = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        self.pending, self.n_pending, self.seen, self.pairs = [], 0, 0, 0

    def add(self, keys: np.ndarray, owner: np.ndarray, responses: int) -> None:
        """The n-grams of a batch of `responses` responses (keys), with the response of each (owner: 0 to
        responses - 1)."""
        keys, owner = per_owner_unique(keys, owner)
        self.pairs += len(keys)
        with np.errstate(over="ignore"):
            keep = keys * MIX <= self.cut
        self.pending.append(keys[keep])  # each key once per response: its count is its document frequency
        self.n_pending += int(keep.sum())
        if self.n_pending >= self.budget:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        new, df = unique_sorted(np.concatenate(self.pending), counts=True)
        self.pending, self.n_pending = [], 0
        keys = unique_sorted(np.concatenate([self.keys, new]))
        total = np.zeros(len(keys), np.int64)
        total[np.searchsorted(keys, self.keys)] += self.df  # each array's keys are distinct: no lost adds
        total[np.searchsorted(keys, new)] += df
        self.keys, self.df = keys, total
        while len(self.keys) > self.budget:
            self.cut = np.uint64(int(self.cut) // 2)
            with np.errstate(over="ignore"):
                keep = self.keys * MIX <= self.cut
            self.keys, self.df = self.keys[keep], self.df[keep]

    def share(self) -> float:
        self.flush()
        rate = (int(self.cut) + 1) / 2**64
        once = int((self.df == 1).sum()) / rate
        return max(0.0, 1 - once / self.pairs) if self.pairs else 0.0


class HyperLogLog:
    """Distinct count of 64-bit hashes, 2^p registers (error ~1.04/sqrt(2^p))."""

    def __init__(self, p: int = 14):
        self.p, self.reg = p, np.zeros(1 << p, dtype=np.uint8)

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        with np.errstate(over="ignore"):
            keys = keys * MIX  # spread the bits before splitting them
        idx = (keys >> np.uint64(64 - self.p)).astype(np.int64)
        rest = (keys << np.uint64(self.p)) | np.uint64(1 << (self.p - 1))
        rank = (64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64))
        # The largest rank per register, from a (register, rank) histogram: np.maximum.at is far slower.
        seen = np.bincount(idx * 64 + rank, minlength=len(self.reg) * 64).reshape(len(self.reg), 64) > 0
        top = np.where(seen.any(axis=1), 63 - np.argmax(seen[:, ::-1], axis=1), 0).astype(np.uint8)
        np.maximum(self.reg, top, out=self.reg)

    def count(self) -> float:
        m = len(self.reg)
        est = 0.7213 / (1 + 1.079 / m) * m * m / np.sum(2.0 ** -self.reg.astype(np.float64))
        zeros = int((self.reg == 0).sum())
        return float(m * np.log(m / zeros)) if est <= 2.5 * m and zeros else float(est)
