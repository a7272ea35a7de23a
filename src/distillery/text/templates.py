"""Find templated responses without being told the templates.

Patterns come from four places, in this order (a response belongs to the first one it matches):
1. known phrases and regexes from params;
2. mined sentence *frames*: each sentence normalised (lower case, numbers → #, capitalised words inside
   the sentence → {X}), so "…requested for Paris" and "…requested for Rome" are one frame; frames that
   are light paraphrases of each other (word-bigram Jaccard ≥ paraphrase_jaccard) are one pattern,
   reported once with its variants;
3. mined word n-gram *spans*: n-grams that recur across responses, merged into maximal spans, so a
   stock phrase buried mid-sentence is found too;
4. near-duplicate responses (neardup.py): a cluster of rephrasings of one whole answer.
A mined pattern must recur in at least max(min_count, min_share × N) responses and, where records have
a `tags.topic`, across at least min_topics topics (a phrase that only ever answers one kind of question
is content, not a template). Text copied from the user's prompt or the tool result is never counted.
The first `max_templates` responses of each pattern are kept; the rest are flagged for regeneration.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from distillery.text.tokens import UnionFind, jaccard, sentences, words
from distillery.params import TemplateParams

INNER_CAPITAL = re.compile(r"(?<=\s)[A-Z][\w'-]*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def frame(sentence: str) -> str:
    s = INNER_CAPITAL.sub("{X}", sentence)
    s = NUMBER.sub("#", s)
    return re.sub(r"\s+", " ", s.lower()).strip(" .!?")


def _joined(text: str) -> str:
    return " " + " ".join(words(text)) + " "


COPY_WORDS = 4  # this many words in a row found in the prompt or tool result count as copied


def copied_positions(w: list[str], context: str) -> set[int]:
    """Positions of the words of `w` that sit in a run of COPY_WORDS words found in the context."""
    out: set[int] = set()
    if not context.strip():
        return out
    for i in range(len(w) - COPY_WORDS + 1):
        if " " + " ".join(w[i:i + COPY_WORDS]) + " " in context:
            out.update(range(i, i + COPY_WORDS))
    return out


def _threshold(cfg: TemplateParams, n: int) -> float:
    return max(cfg.min_count, cfg.min_share * n)


def _bigrams(f: str) -> set:
    w = f.split()
    return {tuple(w[i:i + 2]) for i in range(len(w) - 1)} or {tuple(w)}


def mine_frames(texts, contexts, topics, cfg: TemplateParams) -> list[dict]:
    """Frequent sentence frames, paraphrases grouped: [{frame, variants, doc_freq, example}]."""
    df: Counter[str] = Counter()
    topic_sets: dict[str, set] = defaultdict(set)
    example: dict[str, str] = {}
    for text, context, topic in zip(texts, contexts, topics):
        seen = set()
        for s in sentences(text):
            w = words(s)
            if len(w) < cfg.min_words or len(copied_positions(w, context)) * 2 >= len(w):
                continue  # too short to be a template, or mostly copied from the prompt / tool result
            f = frame(s)
            if f not in seen:
                seen.add(f)
                example.setdefault(f, s)
                if len(topic_sets[f]) < cfg.min_topics:
                    topic_sets[f].add(topic)
        df.update(seen)
    limit = _threshold(cfg, len(texts))
    return group_frames(df, topic_sets, example, limit, min(cfg.min_topics, len(set(topics))), cfg)


def group_frames(df: Counter, topic_sets: dict, example: dict, limit: float, need_topics: int,
                 cfg: TemplateParams) -> list[dict]:
    """Frames that pass the thresholds, light paraphrases joined: [{frame, variants, doc_freq, example}].

    Candidates recur at least a tenth of the threshold each; two are variants of one pattern when their
    word-bigram Jaccard ≥ paraphrase_jaccard (single linkage by union-find, so order does not matter).
    """
    candidates = [f for f, n in df.most_common() if n >= max(3, limit / 10)]
    grams = [_bigrams(f) for f in candidates]
    sets_of = UnionFind(len(candidates))
    for i in range(len(candidates)):
        for j in range(i + 1, len(candidates)):
            if jaccard(grams[i], grams[j]) >= cfg.paraphrase_jaccard:
                sets_of.union(i, j)
    out = []
    # Candidates are most frequent first, so each group is led by its commonest variant.
    for g in ([candidates[i] for i in group] for group in sets_of.groups()):
        n = sum(df[f] for f in g)
        if n >= limit and len(set().union(*(topic_sets[f] for f in g))) >= need_topics:
            out.append({"frame": g[0], "variants": g, "doc_freq": n, "example": example[g[0]]})
    return out


def mine_spans(texts, contexts, topics, cfg: TemplateParams) -> list[dict]:
    """Frequent word spans: n-grams (n = cfg.ngram) recurring across responses, merged into maximal spans."""
    n = cfg.ngram
    limit = _threshold(cfg, len(texts))
    need_topics = min(cfg.min_topics, len(set(topics)))
    docs = [words(t) for t in texts]
    df: Counter[tuple] = Counter()
    doc_grams = []
    for w, context in zip(docs, contexts):
        copied = copied_positions(w, context) if context != " " else set()
        grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1) if copied.isdisjoint(range(i, i + n))}
        df.update(grams)
        doc_grams.append(grams)
    common = {g for g, c in df.items() if c >= limit}
    topic_sets: dict[tuple, set] = defaultdict(set)
    for grams, topic in zip(doc_grams, topics):  # topics only for the n-grams common enough to matter
        for g in grams & common:
            topic_sets[g].add(topic)
    frequent = {g for g in common if len(topic_sets[g]) >= need_topics}
    if not frequent:
        return []
    span_df: Counter[str] = Counter()
    for w in docs:
        span_df.update(set(maximal_spans(w, frequent, n)))
    kept = [s for s, c in span_df.most_common() if c >= limit]
    # Maximal spans only: drop a span that is part of a longer one that is itself frequent.
    kept = [s for s in kept if not any(s != o and f" {s} " in f" {o} " for o in kept)]
    return [{"span": s, "doc_freq": span_df[s]} for s in kept]


def maximal_spans(w: list[str], frequent: set, n: int) -> list[str]:
    """The runs of overlapping frequent n-grams in the words `w`, each joined into one span.

    Consecutive n-grams starting at i and i + 1 share n - 1 words, so a run of them from `start` to
    `last` covers w[start : last + n]; a gap in the run closes the span.
    """
    spans, start, last = [], None, None
    for i in range(len(w) - n + 1):
        if tuple(w[i:i + n]) in frequent:
            if start is not None and i > last + 1:
                spans.append(" ".join(w[start:last + n]))
                start = None
            if start is None:
                start = i
            last = i
    if start is not None:
        spans.append(" ".join(w[start:last + n]))
    return spans


def build_patterns(texts: list[str], cfg: TemplateParams, contexts: list[str] | None = None,
                   topics: list | None = None) -> list[dict]:
    contexts = [_joined(c) for c in contexts] if contexts else [" "] * len(texts)
    topics = topics or [None] * len(texts)
    patterns = [{"id": f"phrase-{i}", "kind": "known_phrase", "text": p} for i, p in enumerate(cfg.known_phrases)]
    patterns += [{"id": f"regex-{i}", "kind": "known_regex", "text": p} for i, p in enumerate(cfg.known_regexes)]
    if cfg.mine:
        # A finding already covered by an earlier pattern (a mined frame that is part of a known phrase,
        # a span that is the fixed part of a frame) is reported once, under the earlier pattern.
        covered = [_joined(p["text"]) for p in patterns if p["kind"] == "known_phrase"]
        for i, f in enumerate(mine_frames(texts, contexts, topics, cfg)):
            if not any(_joined(f["example"]) in c for c in covered):
                patterns.append({"id": f"frame-{i}", "kind": "mined_frame", "text": f["example"],
                                 "frame": f["frame"], "variants": f["variants"], "doc_freq": f["doc_freq"]})
                covered += [_joined(f["example"])] + [_joined(v) for v in f["variants"]]
        for i, s in enumerate(mine_spans(texts, contexts, topics, cfg)):
            if not any(f" {s['span']} " in c for c in covered):
                patterns.append({"id": f"span-{i}", "kind": "mined_span", "text": s["span"], "doc_freq": s["doc_freq"]})
    return patterns


def near_duplicate_patterns(ids: list[str], texts: list[str], clusters: list[list[int]], cfg: TemplateParams) -> list[dict]:
    """Clusters of near-duplicate responses big enough to be a template, as patterns of their members."""
    return [{"id": f"neardup-{k}", "kind": "near_duplicate", "text": texts[c[0]], "doc_freq": len(c),
             "members": [ids[i] for i in c]}
            for k, c in enumerate(c for c in clusters if len(c) > cfg.max_templates)]


def _matcher(pattern: dict):
    kind = pattern["kind"]
    if kind == "known_phrase":
        needle = pattern["text"].lower()
        return lambda rid, text, frames, joined: needle in text.lower()
    if kind == "known_regex":
        rx = re.compile(pattern["text"], re.I)
        return lambda rid, text, frames, joined: rx.search(text) is not None
    if kind == "mined_frame":
        variants = set(pattern["variants"])
        return lambda rid, text, frames, joined: not variants.isdisjoint(frames)
    if kind == "mined_span":
        needle = f" {pattern['text']} "
        return lambda rid, text, frames, joined: needle in joined
    members = set(pattern["members"])  # near_duplicate: membership, decided when the cluster was found
    return lambda rid, text, frames, joined: rid in members


def match_patterns(texts: list[str], patterns: list[dict], ids: list[str] | None = None) -> list[list[str]]:
    """For each text, the ids of the patterns it contains (in pattern order)."""
    matchers = [(p["id"], _matcher(p)) for p in patterns]
    ids = ids or [None] * len(texts)
    out = []
    for rid, text in zip(ids, texts):
        frames = {frame(s) for s in sentences(text)}
        joined = _joined(text)
        out.append([pid for pid, m in matchers if m(rid, text, frames, joined)])
    return out


def flag_templated(ids: list[str], texts: list[str], patterns: list[dict], max_templates: int):
    """(matches per text, ids to regenerate): keep the first max_templates of each pattern, flag the rest."""
    matches = match_patterns(texts, patterns, ids)
    kept: dict[str, int] = defaultdict(int)
    flagged = []
    for rid, pids in zip(ids, matches):
        if not pids:
            continue
        primary = pids[0]
        if kept[primary] < max_templates:
            kept[primary] += 1
        else:
            flagged.append(rid)
    return matches, flagged


def template_rate(matches: list[list[str]]) -> float:
    return round(sum(bool(m) for m in matches) / len(matches), 4) if matches else 0.0


def pattern_report(patterns: list[dict], ids: list[str], matches: list[list[str]], flagged: set[str]) -> list[dict]:
    """patterns.json: each pattern with its count, flagged count and example ids, for a person to read."""
    members: dict[str, list[str]] = defaultdict(list)
    for rid, pids in zip(ids, matches):
        for pid in pids:
            members[pid].append(rid)
    return [{**{k: v for k, v in p.items() if k != "members"}, "count": len(members[p["id"]]),
             "flagged": sum(r in flagged for r in members[p["id"]]), "example_ids": members[p["id"]][:5]}
            for p in patterns]
