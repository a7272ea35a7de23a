"""Template detection for corpora too big for memory: three streaming passes, memory that stays flat.

`detect_streaming(source, cfg)` takes a callable that returns a fresh iterator of (id, text, context,
topic) each time it is called, and reads it three times:
1. sketches of fixed size (numpy): count-min of the word n-grams and of the LSH bands of every sentence
   frame (paraphrase.py), of the request's words; the diversity figures that stream (n-gram totals,
   HyperLogLog distinct counts, a hash sample of 4-grams for self-repetition, zlib);
2. exact counts, topics and sample contexts for the frames and n-grams the sketches say may pass the
   threshold (a count-min sketch only over-estimates, so nothing frequent is missed; the exact pass
   removes the rest); then the same families, guards and thresholds as templates.py;
3. matching: families (FamilyIndex), maximal spans, pattern counts, the first max_templates of each kept,
   the rest flagged.
Memory is the sketches (~40 MB) plus the candidates: frames and n-grams frequent enough to matter, which
grow with how templated the corpus is, not with its size. Each pass parses a chunk of responses at once
and hashes its n-grams in bulk (sketches.py). Near-duplicate clustering needs an index of everything
seen, so this path leaves it to the in-memory stage.
"""
from __future__ import annotations

import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from itertools import islice

import numpy as np

from distillery.params import TemplateParams
from distillery.text.paraphrase import SAMPLES, FrameStats, MinHasher, explained_by_request, families
from distillery.text.sketches import (WORD_CHARS, CountMin, HyperLogLog, RepeatShare, byte_tokens, ngram_keys,
                                      per_owner_unique, unique_sorted)
from distillery.text.templates import (Covered, _joined, _matcher, _threshold, build_patterns, context_grams,
                                       copied_positions, eligible, family_index, family_patterns, frame_pattern,
                                       min_bucket, parse_texts, spans_at)
from distillery.text.tokens import stable_hash64, words

CHUNK = 5000  # responses parsed and hashed together


class Chunk:
    """One chunk of the stream, parsed: sentences and frames of each response, every word's hash (one array
    for the chunk, sketches.byte_tokens), and for the passes that mine, the eligible frames (each once per
    response, as templates.mine_frames picks them) and the request's words."""

    def __init__(self, rows: list[tuple], cfg: TemplateParams, mining: bool):
        self.ids, self.texts, self.contexts, self.topics = (list(x) for x in zip(*rows))
        sents, self.frames = parse_texts(self.texts)
        self.grams = [context_grams(c) if c else frozenset() for c in self.contexts]
        joined = "\x01".join("\x00".join(s) for s in sents).lower()
        self.h, (n_ends, self.owner) = byte_tokens(joined, WORD_CHARS, b"\x00\x01")
        self.offsets = np.searchsorted(self.owner, np.arange(len(sents) + 1))
        if mining:
            # Sentence k of response d is number first[d] + k in the chunk (an empty response takes one).
            first = np.cumsum([0] + [max(1, len(s)) for s in sents]).tolist()
            n_words = np.bincount(n_ends + self.owner, minlength=first[-1]).tolist()
            self.occ_frame, self.occ_sentence, occ_doc = [], [], []
            for d, (ss, fs, context) in enumerate(zip(sents, self.frames, self.grams)):
                seen = set()
                for k, (s, f) in enumerate(zip(ss, fs)):
                    if n_words[first[d] + k] >= cfg.min_words and f not in seen and (
                            not context or eligible(words(s), context, cfg)):
                        seen.add(f)
                        self.occ_frame.append(f)
                        self.occ_sentence.append(s)
                        occ_doc.append(d)
            self.occ_doc = np.array(occ_doc, dtype=np.int64)
            self.request = [request_hashes(c) for c in self.contexts]

    def words(self, d: int) -> list[str]:
        return words(self.texts[d])

    def band_keys(self, minhash: MinHasher) -> np.ndarray:
        """(occurrences, BANDS): each distinct frame of the chunk hashed once."""
        uniq = {f: i for i, f in enumerate(dict.fromkeys(self.occ_frame))}
        return minhash.band_keys(list(uniq))[[uniq[f] for f in self.occ_frame]]

    def span_grams(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(keys, responses) of the n-grams of each response, each once per response, none of them with a
        copied word in it (as mine_spans)."""
        keys, starts = ngram_keys(self.h, self.owner, n)
        if any(self.grams):
            copied = np.zeros(len(self.h) + 1, dtype=np.int64)
            for d, context in enumerate(self.grams):
                for i in copied_positions(self.words(d), context) if context else ():
                    copied[self.offsets[d] + i + 1] = 1
            inside = np.cumsum(copied)
            clean = inside[starts + n] == inside[starts]
            keys, starts = keys[clean], starts[clean]
        return per_owner_unique(keys, self.owner[starts])


def request_hashes(context: str) -> np.ndarray:
    """The distinct words (3+ letters) of a prompt and tool result, hashed, for the request test."""
    if not context:
        return np.zeros(0, np.uint64)
    return np.array(sorted({stable_hash64(w) for w in words(context) if len(w) > 2 and w.isalpha()}),
                    dtype=np.uint64)


def _chunks(stream, cfg: TemplateParams, mining: bool = True):
    stream = iter(stream)
    while rows := list(islice(stream, CHUNK)):
        yield Chunk(rows, cfg, mining)


def detect_streaming(source, cfg: TemplateParams, on_flag=None) -> tuple[list[dict], dict]:
    """(patterns with counts, metrics); `on_flag(id, pattern ids)` is called for each flagged response."""
    minhash = MinHasher()
    sketch = _sketch_pass(source(), cfg, minhash)
    limit = _threshold(cfg, sketch.n_docs)
    found = _count_pass(source(), cfg, minhash, sketch, limit)
    known = build_patterns([], TemplateParams(**{**vars(cfg), "mine": False}))
    known_phrases = [_joined(p["text"]) for p in known if p["kind"] == "known_phrase"]
    mined = _families(found, minhash, limit, cfg, sketch)
    mined = [(i, f) for i, f in enumerate(mined) if not any(_joined(f["example"]) in k for k in known_phrases)]
    covered = Covered(cfg.ngram)  # a span inside what a frame or known phrase reports is reported once
    covered.add(known_phrases + [e for _, f in mined for e in f["examples"]])
    frequent = np.array(sorted(g for g, n in found.gram_df.items() if n >= limit
                               and len(found.gram_topics[g]) >= found.need
                               and not sketch.explains(found.gram_samples[g], cfg)), dtype=np.uint64)
    patterns, matched = _match_pass(source(), cfg, known, [frame_pattern(i, f) for i, f in mined], frequent,
                                    covered, on_flag)
    n = sketch.n_docs
    metrics = {
        "responses": n, "patterns": len(patterns), **matched,
        "template_rate": round(matched["templated"] / n, 4) if n else 0.0,
        **{f"distinct_{k}": round(sketch.hll[k].count() / sketch.totals[k], 4) if sketch.totals[k] else 0.0
           for k in (1, 2, 3)},
        "exact_duplicate_rate": round(max(0.0, 1 - sketch.texts_hll.count() / n), 4) if n else 0.0,
        "compression_ratio": round(sketch.raw / sketch.packed, 4) if sketch.packed else 0.0,
        "self_repetition_4gram": round(sketch.repeats.share(), 4),
    }
    return patterns, metrics


@dataclass
class Sketch:
    """Pass 1: sketches of fixed size. 2^20 cells a row: at 1M responses ~60 keys a cell, far below the
    thresholds (a family's band shared by limit/20 = 1,000 responses). Self-repetition asks "seen in another
    response?", which a count-min sketch cannot answer at scale: RepeatShare counts a hash sample exactly."""
    bands: CountMin = field(default_factory=lambda: CountMin(20))
    grams: CountMin = field(default_factory=lambda: CountMin(20, seed=9))
    request: CountMin = field(default_factory=lambda: CountMin(20, seed=13))
    repeats: RepeatShare = field(default_factory=RepeatShare)
    hll: dict = field(default_factory=lambda: {n: HyperLogLog() for n in (1, 2, 3)})
    texts_hll: HyperLogLog = field(default_factory=HyperLogLog)
    totals: Counter = field(default_factory=Counter)
    n_docs: int = 0
    raw: int = 0
    packed: int = 0

    def explains(self, samples: list[np.ndarray], cfg: TemplateParams) -> bool:
        return explained_by_request([s.tolist() for s in samples], lambda w: int(self.request.estimate(
            np.array([w], dtype=np.uint64))[0]), self.n_docs, cfg.request_lift)


def _sketch_pass(stream, cfg: TemplateParams, minhash: MinHasher) -> Sketch:
    """Pass 1: the sketches, and the diversity figures that stream."""
    sk, packer = Sketch(), zlib.compressobj(6)
    for i, c in enumerate(_chunks(stream, cfg)):
        sk.bands.add(c.band_keys(minhash).ravel())
        sk.grams.add(c.span_grams(cfg.ngram)[0])
        for n in (1, 2, 3):
            keys = ngram_keys(c.h, c.owner, n)[0]
            sk.hll[n].add(keys)
            sk.totals[n] += len(keys)
        fours, at = ngram_keys(c.h, c.owner, 4)
        sk.repeats.add(fours, c.owner[at], len(c.texts))
        sk.request.add(np.concatenate(c.request))
        # A stable hash: Python's hash() of a str changes with PYTHONHASHSEED, and so would the metrics.
        sk.texts_hll.add(np.array([stable_hash64(t) for t in c.texts], dtype=np.uint64))
        sk.n_docs += len(c.texts)
        if i < 20 or i % 10 == 0:  # zlib's window is 32 KB: a tenth of the chunks has the ratio of them all
            data = "".join(text + "\n" for text in c.texts).encode()
            sk.raw += len(data)
            sk.packed += len(packer.compress(data))
    sk.packed += len(packer.flush())
    return sk


@dataclass
class Found:
    """Pass 2: exact counts, topics and sample contexts of the candidates the sketches let through."""
    stats: FrameStats
    buckets: Counter = field(default_factory=Counter)
    gram_df: Counter = field(default_factory=Counter)
    gram_topics: defaultdict = field(default_factory=lambda: defaultdict(set))
    gram_samples: defaultdict = field(default_factory=lambda: defaultdict(list))
    need: int = 1  # topics a pattern must span: min_topics, or fewer where the corpus has fewer


def _count_pass(stream, cfg: TemplateParams, minhash: MinHasher, sk: Sketch, limit: float) -> Found:
    found = Found(FrameStats(cfg.min_topics))
    bucket_min = min_bucket(limit)
    for c in _chunks(stream, cfg):
        keys = c.band_keys(minhash)
        big = sk.bands.estimate(keys.ravel()).reshape(keys.shape) >= bucket_min
        for o in np.flatnonzero(big.any(axis=1)).tolist():
            d = int(c.occ_doc[o])
            found.stats.add(c.occ_frame[o], c.occ_sentence[o], c.topics[d], c.request[d])
        bucket_keys, counts = unique_sorted(keys[big], counts=True)
        found.buckets.update(dict(zip(bucket_keys.tolist(), counts.tolist())))
        grams, owner = c.span_grams(cfg.ngram)
        common = sk.grams.estimate(grams) >= limit
        for g, d in zip(grams[common].tolist(), owner[common].tolist()):
            found.gram_df[g] += 1
            found.gram_topics[g].add(c.topics[d])
            if len(found.gram_samples[g]) < SAMPLES:
                found.gram_samples[g].append(c.request[d])
    topics_seen = set().union(*found.gram_topics.values(), *found.stats.topics)
    found.need = min(cfg.min_topics, max(1, len(topics_seen)))
    return found


def _families(found: Found, minhash: MinHasher, limit: float, cfg: TemplateParams, sk: Sketch) -> list[dict]:
    """The frame families of the candidates, as templates.mine_frames finds them in memory."""
    keys = minhash.band_keys(found.stats.frames)
    bucket_keys = np.array(sorted(found.buckets), dtype=np.uint64)
    bucket_counts = np.array([found.buckets[k] for k in bucket_keys.tolist()], dtype=np.int64)
    groups = families(found.stats, keys, bucket_keys, bucket_counts, min_bucket(limit), cfg.paraphrase_jaccard,
                      cfg.family_merge_jaccard, max(3.0, limit / 10))
    return family_patterns(found.stats, groups, limit, found.need, cfg, lambda s: sk.explains(s, cfg))


def _match_pass(stream, cfg: TemplateParams, known: list[dict], mined: list[dict], frequent: np.ndarray,
                covered: Covered, on_flag) -> tuple[list[dict], dict]:
    """Pass 3: each response's patterns; the first max_templates of each (by its first pattern) kept, the
    rest flagged. Spans are found here, as maximal runs of frequent n-grams."""
    index = family_index(mined)
    order = {p["id"]: k for k, p in enumerate(mined)}
    known_matchers = [(p["id"], _matcher(p)) for p in known]
    counts, kept, spans = Counter(), Counter(), {}
    templated = flagged = 0
    for c in _chunks(stream, cfg, mining=False):
        keys, starts = ngram_keys(c.h, c.owner, cfg.ngram)
        span_starts = defaultdict(list)
        for s in starts[np.isin(keys, frequent)].tolist():
            d = int(c.owner[s])
            span_starts[d].append(s - int(c.offsets[d]))
        hits = iter(index.match_all([f for fs in c.frames for f in fs]))
        for d, (rid, text, frames) in enumerate(zip(c.ids, c.texts, c.frames)):
            families_hit = {pid for _ in frames for pid in next(hits)}
            pids = [pid for pid, m in known_matchers if m(rid, text, set(frames), "")]
            pids += sorted(families_hit, key=order.__getitem__)
            for span in dict.fromkeys(spans_at(c.words(d), span_starts[d], cfg.ngram) if d in span_starts else ()):
                if span not in covered:
                    pids.append(spans.setdefault(span, f"span-{len(spans)}"))
            for pid in pids:
                counts[pid] += 1
            if pids:
                templated += 1
                if kept[pids[0]] < cfg.max_templates:
                    kept[pids[0]] += 1
                else:
                    flagged += 1
                    if on_flag is not None:
                        on_flag(rid, pids)
    patterns = known + mined + [{"id": pid, "kind": "mined_span", "text": s} for s, pid in spans.items()]
    for p in patterns:
        p["count"] = counts[p["id"]]
    return patterns, {"templated": templated, "flagged": flagged}
