"""Template detection for corpora too big for memory: three streaming passes, memory that stays flat.

`detect_streaming(source, cfg)` takes a callable that returns a fresh iterator of (id, text, context,
topic) each time it is called, and reads it three times:
1. count-min sketches (numpy, fixed size) of the document frequency of every sentence frame and word
   n-gram, plus the diversity figures that stream (n-gram totals, HyperLogLog distinct counts, zlib);
2. exact counts, topics and examples for the frames and n-grams the sketch says may pass the threshold
   (a count-min sketch only over-estimates, so nothing frequent is missed; the exact pass removes the
   rest);
3. matching: maximal spans, pattern counts, the first max_templates of each kept, the rest flagged.
Memory is the sketches (~200 MB) plus the candidates, whatever the corpus size. Near-duplicate
clustering needs an index of everything seen, so this path leaves it to the in-memory stage.
"""
from __future__ import annotations

import zlib
from collections import Counter, defaultdict

import numpy as np

from distillery.text.tokens import sentences, stable_hash64, words
from distillery.params import TemplateParams
from distillery.text.templates import (_joined, _matcher, _threshold, build_patterns, copied_positions, frame,
                                       group_frames, maximal_spans)

class CountMin:
    def __init__(self, width_bits: int = 22, depth: int = 4, seed: int = 7):
        rng = np.random.default_rng(seed)
        self.table = np.zeros((depth, 1 << width_bits), dtype=np.uint32)
        self.mul = rng.integers(1, 2**61, size=depth, dtype=np.uint64) | np.uint64(1)
        self.shift = np.uint64(64 - width_bits)

    def _rows(self, keys: np.ndarray):
        return [(keys * m) >> self.shift for m in self.mul]  # multiply-shift hashing, one per row

    def add(self, keys: np.ndarray) -> None:
        for row, idx in zip(self.table, self._rows(keys)):
            np.add.at(row, idx.astype(np.int64), 1)

    def estimate(self, keys: np.ndarray) -> np.ndarray:
        return np.min([row[idx.astype(np.int64)] for row, idx in zip(self.table, self._rows(keys))], axis=0)


class HyperLogLog:
    """Distinct count of 64-bit hashes, 2^p registers (error ~1.04/sqrt(2^p))."""

    def __init__(self, p: int = 14):
        self.p, self.reg = p, np.zeros(1 << p, dtype=np.uint8)

    def add(self, keys: np.ndarray) -> None:
        if not len(keys):
            return
        keys = keys * np.uint64(0x9E3779B97F4A7C15)  # spread the bits before splitting them
        idx = (keys >> np.uint64(64 - self.p)).astype(np.int64)
        rest = (keys << np.uint64(self.p)) | np.uint64(1 << (self.p - 1))
        rank = (64 - np.floor(np.log2(rest.astype(np.float64))).astype(np.int64)).astype(np.uint8)
        np.maximum.at(self.reg, idx, rank)

    def count(self) -> float:
        m = len(self.reg)
        est = 0.7213 / (1 + 1.079 / m) * m * m / np.sum(2.0 ** -self.reg.astype(np.float64))
        zeros = int((self.reg == 0).sum())
        return float(m * np.log(m / zeros)) if est <= 2.5 * m and zeros else float(est)


def _keys(items) -> np.ndarray:
    # A stable hash: Python's hash() of a str changes with PYTHONHASHSEED, and so would the metrics.
    return np.fromiter((stable_hash64(x) for x in items), dtype=np.uint64)


def _chunks(stream, size: int = 5000):
    chunk = []
    for item in stream:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _doc(text: str, context: str, cfg: TemplateParams):
    """(frames, n-gram keys, words) of one response, copied text excluded as in templates.py."""
    joined_context = _joined(context) if context else " "
    frames = set()
    for s in sentences(text):
        w = words(s)
        if len(w) >= cfg.min_words and len(copied_positions(w, joined_context)) * 2 < len(w):
            frames.add(frame(s))
    w = words(text)
    copied = copied_positions(w, joined_context) if context else set()
    n = cfg.ngram
    grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1) if copied.isdisjoint(range(i, i + n))}
    return frames, grams, w


def detect_streaming(source, cfg: TemplateParams, on_flag=None) -> tuple[list[dict], dict]:
    """(patterns with counts, metrics); `on_flag(id, pattern ids)` is called for each flagged response."""
    frame_cms, gram_cms, rep_cms = CountMin(), CountMin(), CountMin(seed=11)
    hll = {n: HyperLogLog() for n in (1, 2, 3)}
    texts_hll = HyperLogLog()
    totals = Counter()
    packer = zlib.compressobj(6)
    raw = packed = n_docs = 0
    for chunk in _chunks(source()):  # pass 1: sketches and streaming diversity figures
        docs = [_doc(text, context, cfg) for _, text, context, _ in chunk]
        frame_cms.add(_keys(f for frames, _, _ in docs for f in frames))
        gram_cms.add(_keys(g for _, grams, _ in docs for g in grams))
        for k in (1, 2, 3):
            keys = _keys(tuple(w[i:i + k]) for _, _, w in docs for i in range(len(w) - k + 1))
            hll[k].add(keys)
            totals[k] += len(keys)
        rep_cms.add(_keys(g for _, _, w in docs for g in {tuple(w[i:i + 4]) for i in range(len(w) - 3)}))
        texts_hll.add(_keys(text for _, text, _, _ in chunk))
        data = "".join(text + "\n" for _, text, _, _ in chunk).encode()
        raw += len(data)
        packed += len(packer.compress(data))
        n_docs += len(chunk)
    packed += len(packer.flush())
    limit = _threshold(cfg, n_docs)

    frame_df, frame_topics, frame_example = Counter(), defaultdict(set), {}
    gram_df, gram_topics = Counter(), defaultdict(set)
    repeated = rep_total = 0
    for chunk in _chunks(source()):  # pass 2: exact counts for the candidates only
        docs = [_doc(text, context, cfg) for _, text, context, _ in chunk]
        frame_lists = [list(frames) for frames, _, _ in docs]
        gram_lists = [list(grams) for _, grams, _ in docs]
        frame_est = iter(frame_cms.estimate(_keys(f for fl in frame_lists for f in fl)).tolist())
        gram_est = iter(gram_cms.estimate(_keys(g for gl in gram_lists for g in gl)).tolist())
        for (_, text, _, topic), fl, gl in zip(chunk, frame_lists, gram_lists):
            for f in fl:
                if next(frame_est) >= max(3, limit / 10):  # paraphrase variants: a tenth of the threshold each
                    frame_df[f] += 1
                    frame_topics[f].add(topic)
                    if f not in frame_example:
                        frame_example[f] = next(s for s in sentences(text) if frame(s) == f)
            for g in gl:
                if next(gram_est) >= limit:
                    gram_df[g] += 1
                    gram_topics[g].add(topic)
        fours = _keys(tuple(w[i:i + 4]) for _, _, w in docs for i in range(len(w) - 3))
        repeated += int((rep_cms.estimate(fours) > 1).sum())
        rep_total += len(fours)
    topics_seen = set().union(*gram_topics.values(), *frame_topics.values()) if gram_topics or frame_topics else set()
    need = min(cfg.min_topics, max(1, len(topics_seen)))
    patterns = _frame_patterns(frame_df, frame_topics, frame_example, limit, need, cfg)
    frequent = {g for g, c in gram_df.items() if c >= limit and len(gram_topics[g]) >= need}

    known = [p for p in build_patterns([], TemplateParams(**{**vars(cfg), "mine": False}))]
    known_matchers = [(p["id"], _matcher(p)) for p in known]
    by_variant = {v: p["id"] for p in patterns for v in p["variants"]}
    covered = [_joined(p["text"]) for p in patterns] + [_joined(v) for v in by_variant]
    counts, kept, spans = Counter(), Counter(), {}
    templated = flagged = 0
    for rid, text, context, _ in source():  # pass 3: match, keep the first max_templates, flag the rest
        frames, _, w = _doc(text, context, cfg)
        joined = _joined(text)
        pids = [pid for pid, m in known_matchers if m(rid, text, frames, joined)]
        pids += sorted({by_variant[f] for f in frames if f in by_variant}, key=lambda p: int(p.split("-")[1]))
        for span in maximal_spans(w, frequent, cfg.ngram):
            if not any(f" {span} " in c for c in covered):  # the fixed part of a frame: reported once
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
    patterns = known + patterns + [{"id": pid, "kind": "mined_span", "text": s} for s, pid in spans.items()]
    for p in patterns:
        p["count"] = counts[p["id"]]
    metrics = {
        "responses": n_docs, "patterns": len(patterns), "templated": templated,
        "template_rate": round(templated / n_docs, 4) if n_docs else 0.0, "flagged": flagged,
        **{f"distinct_{k}": round(hll[k].count() / totals[k], 4) if totals[k] else 0.0 for k in (1, 2, 3)},
        "exact_duplicate_rate": round(max(0.0, 1 - texts_hll.count() / n_docs), 4) if n_docs else 0.0,
        "compression_ratio": round(raw / packed, 4) if packed else 0.0,
        "self_repetition_4gram": round(repeated / rep_total, 4) if rep_total else 0.0,
    }
    return patterns, metrics


def _frame_patterns(df, topics, example, limit, need, cfg) -> list[dict]:
    return [{"id": f"frame-{i}", "kind": "mined_frame", "text": f["example"], "frame": f["frame"],
             "variants": f["variants"], "doc_freq": f["doc_freq"]}
            for i, f in enumerate(group_frames(df, topics, example, limit, need, cfg))]

