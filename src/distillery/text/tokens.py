"""Text helpers at the bottom of the import graph: words, sentences, shingles, Jaccard, union-find,
and a hash that is the same in every process (Python's `hash()` of a str is salted per process).
"""
from __future__ import annotations

import hashlib
import re

WORD = re.compile(r"[a-z0-9']+")
SENTENCE_END = re.compile(r"([.!?])\s+")
ODD_SPACE = re.compile(r"[.!?][^\S \n]")  # an end followed by whitespace other than a space or a newline


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def sentences(text: str) -> list[str]:
    """Split after . ! or ? followed by whitespace, and at line breaks. Each end is marked with a newline and
    the text split on newlines: the same pieces as splitting on the regex (?<=[.!?])\\s+|\\n+, in half the
    time (str.replace where the whitespace after an end is a space or a newline, as it nearly always is)."""
    return [s for s in (p.strip() for p in split_ends(text).split("\n")) if s]


def split_ends(text: str) -> str:
    """The text with the whitespace after each . ! or ? turned into a newline (see sentences)."""
    if ODD_SPACE.search(text):
        return SENTENCE_END.sub("\\1\n", text)
    return text.replace(". ", ".\n").replace("! ", "!\n").replace("? ", "?\n")


def shingles(text: str, k: int) -> set[str]:
    w = words(text)
    if len(w) <= k:
        return {" ".join(w)} if w else set()
    return {" ".join(w[i:i + k]) for i in range(len(w) - k + 1)}


def jaccard(a: set, b: set) -> float:
    return len(a & b) / len(a | b) if a or b else 1.0


def stable_hash64(item) -> int:
    """A 64-bit hash of a str or a tuple of str, identical across processes and PYTHONHASHSEED values."""
    text = item if isinstance(item, str) else "\x1f".join(item)
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "little")


class UnionFind:
    """Disjoint sets over 0..n-1; the smallest index of a set is its root, so results are order-free."""

    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        a, b = self.find(i), self.find(j)
        if a != b:
            self.parent[max(a, b)] = min(a, b)

    def groups(self) -> list[list[int]]:
        """Every set, members in index order, sets ordered by their first member."""
        out: dict[int, list[int]] = {}
        for i in range(len(self.parent)):
            out.setdefault(self.find(i), []).append(i)
        return sorted(out.values(), key=lambda g: g[0])
