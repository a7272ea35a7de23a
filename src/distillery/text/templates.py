"""Find templated responses without being told the templates.

Patterns come from four places, in this order (a response belongs to the first one it matches):
1. known phrases and regexes from params;
2. mined sentence *frames*: each sentence normalised (lower case, numbers → #, capitalised words inside
   the sentence → {X}), so "…requested for Paris" and "…requested for Rome" are one frame; frames that
   paraphrase each other (word unigram+bigram Jaccard ≥ paraphrase_jaccard, found by MinHash LSH) are one
   *family*, reported once with its variants, and counted when its members *together* recur enough, so a
   stock sentence that drifts and never repeats a wording is found too (paraphrase.py);
3. mined word n-gram *spans*: n-grams that recur across responses, merged into maximal spans, so a
   stock phrase buried mid-sentence is found too;
4. near-duplicate responses (neardup.py): a cluster of rephrasings of one whole answer.
A mined pattern must recur in at least max(min_count, min_share × N) responses and, where records have
a `tags.topic`, across at least min_topics topics (a phrase that only ever answers one kind of question
is content, not a template). What the task makes alike is not a template: a sentence mostly copied from
the user's prompt or the tool result is never counted, and a pattern whose answers share a word of the
request far more often than answers in general is dropped (request_lift: a greeting the user asked for,
a tool result or a formula restated in the same words with the user's own values).
The first `max_templates` responses of each pattern are kept; the rest are flagged for regeneration.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

import numpy as np

from distillery.params import TemplateParams
from distillery.text.paraphrase import (SAMPLES, SHOWN, FamilyIndex, FrameStats, MinHasher, anchors_of,
                                        bucket_sizes, explained_by_request, families)
from distillery.text.tokens import WORD, sentences, split_ends, words

INNER_CAPITAL = re.compile(r"(?<=\s)[A-Z][\w'-]*")
SPACED_CAPITAL = re.compile(r" [A-Z][\w'-]*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")
SPACES = re.compile(r"\s+")


def frame(sentence: str) -> str:
    s = INNER_CAPITAL.sub("{X}", sentence)
    s = NUMBER.sub("#", s)
    return SPACES.sub(" ", s.lower()).strip(" .!?")


def frames_of(sents: list[str]) -> list[str]:
    """frame() of each (stripped) sentence, with one pass of each regex over them all: whitespace collapsed
    first, so an inner capital is one after a plain space (a faster regex than the look-behind), and
    sentences joined by \\x00, which is not whitespace, so no sentence's first word counts as inner."""
    if not sents:
        return []
    joined = " ".join("\x00".join(sents).split())
    return [f.strip(" .!?") for f in NUMBER.sub("#", SPACED_CAPITAL.sub(" {X}", joined)).lower().split("\x00")]


_END = np.zeros(256, dtype=bool)
_END[list(b".!?")] = True
_ODD_SPACE = np.zeros(256, dtype=bool)
_ODD_SPACE[[9, 11, 12, 13, 28, 29, 30, 31]] = True  # ASCII whitespace other than a space or a newline
_DIGIT = np.zeros(256, dtype=bool)
_DIGIT[list(b"0123456789")] = True


def parse_texts(texts: list[str]) -> tuple[list[list[str]], list[list[str]]]:
    """(sentences, frames) of each text: sentences() and frames_of() of each, computed over the texts joined
    by \\x01. Each regex then runs once per batch, and for ASCII text numpy finds the work that is not needed
    (no odd whitespace after an end, no run of spaces, no digit in most responses): a third less time."""
    big = "\x01".join(texts)
    if "\x00" in big or big.count("\x01") != len(texts) - 1:  # the separators are in the text itself
        sents = [sentences(t) for t in texts]
        return sents, [frames_of(s) for s in sents]
    plain = big.isascii()
    b = np.frombuffer(big.encode(), dtype=np.uint8) if plain else None
    if plain and not (_END[b[:-1]] & _ODD_SPACE[b[1:]]).any():
        big = big.replace(". ", ".\n").replace("! ", "!\n").replace("? ", "?\n")
    else:
        big = split_ends(big)
    sents = [[s for s in (p.strip() for p in doc.split("\n")) if s] for doc in big.split("\x01")]
    framed = "\x01".join("\x00".join(s) for s in sents)
    b = np.frombuffer(framed.encode(), dtype=np.uint8) if plain else None
    if not plain or _ODD_SPACE[b].any() or ((b[1:] == 32) & (b[:-1] == 32)).any():
        framed = " ".join(framed.split())
        b = np.frombuffer(framed.encode(), dtype=np.uint8) if plain else None
    framed = SPACED_CAPITAL.sub(" {X}", framed).split("\x01")
    with_digits = set(np.cumsum(b == 1)[_DIGIT[b]].tolist()) if plain else range(len(texts))
    for d in with_digits:
        framed[d] = NUMBER.sub("#", framed[d])
    return sents, [[f.strip(" .!?") for f in doc.lower().split("\x00")] if s else [] for doc, s in zip(framed, sents)]


def _joined(text: str) -> str:
    return " " + " ".join(words(text)) + " "


COPY_WORDS = 4  # this many words in a row found in the prompt or tool result count as copied


def context_grams(context: str) -> frozenset:
    """The runs of COPY_WORDS words of a prompt and tool result, for copied_positions."""
    w = words(context)
    return frozenset(" ".join(w[i:i + COPY_WORDS]) for i in range(len(w) - COPY_WORDS + 1))


def copied_positions(w: list[str], context: frozenset) -> set[int]:
    """Positions of the words of `w` that sit in a run of COPY_WORDS words found in the context (context_grams)."""
    out: set[int] = set()
    if context:
        for i in range(len(w) - COPY_WORDS + 1):
            if " ".join(w[i:i + COPY_WORDS]) in context:
                out.update(range(i, i + COPY_WORDS))
    return out


def sentence_parts(texts: list[str]) -> list[tuple[list[str], list[str], list[str], list[int]]]:
    """(sentences, their frames, the words of the text (= words(text)), how many words each sentence has)."""
    out = []
    for ss, fs in zip(*parse_texts(texts)):
        per = [WORD.findall(x) for x in "\x00".join(ss).lower().split("\x00")] if ss else []
        out.append((ss, fs, [w for p in per for w in p], [len(p) for p in per]))
    return out


def eligible(w: list[str], context: frozenset, cfg: TemplateParams) -> bool:
    """May this sentence (its words) be part of a template? Not when it is short, or mostly copied from the
    prompt or tool result (`context`, as context_grams)."""
    return len(w) >= cfg.min_words and (not context or len(copied_positions(w, context)) * 2 < len(w))


def _threshold(cfg: TemplateParams, n: int) -> float:
    return max(cfg.min_count, cfg.min_share * n)


def min_bucket(limit: float) -> float:
    """Responses an LSH band must be shared by for its frames to be family candidates: a family that just
    passes `limit` has bands shared by a tenth of it or more, one base wording with one-word edits more."""
    return max(2.0, limit / 20)


class RequestWords:
    """The words (3+ letters) of each response's prompt and tool result, and in how many responses each is."""

    def __init__(self, contexts: list[str] | None, n: int):
        self.sets = [frozenset(w for w in words(c) if len(w) > 2 and w.isalpha()) for c in contexts] if contexts \
            else [frozenset()] * n
        self.df = Counter(w for s in self.sets for w in s)

    def explains(self, docs: list[int], cfg: TemplateParams) -> bool:
        return explained_by_request([self.sets[i] for i in docs], self.df.__getitem__, len(self.sets),
                                    cfg.request_lift)


def family_patterns(stats: FrameStats, groups: list[list[int]], limit: float, need_topics: int,
                    cfg: TemplateParams, explains) -> list[dict]:
    """The families that recur enough, across enough topics, and that the request does not explain:
    [{frame, variants (all, most common first), variant_counts, doc_freq, example, anchors}]."""
    out = []
    for g in groups:
        n = sum(stats.df[i] for i in g)  # a response with two variants of one family counts twice (rare)
        if n < limit or len(set().union(*(stats.topics[i] for i in g))) < need_topics:
            continue
        if explains([s for i in g for s in stats.samples[i]][:16 * SAMPLES]):  # a few hundred settle it
            continue
        variants = [stats.frames[i] for i in g]
        out.append({"frame": variants[0], "variants": variants, "variant_counts": [stats.df[i] for i in g],
                    "doc_freq": n, "example": stats.example[g[0]], "examples": [stats.example[i] for i in g],
                    "anchors": anchors_of(variants, cfg.paraphrase_jaccard), "jaccard": cfg.paraphrase_jaccard})
    return out


def mine_frames(parts, contexts, topics, cfg: TemplateParams, request: RequestWords | None = None) -> list[dict]:
    """Frame families that pass the thresholds (see family_patterns). parts: sentence_parts of each text;
    contexts: context_grams of each."""
    request = request or RequestWords(None, len(parts))
    stats = FrameStats(cfg.min_topics)
    for d, ((sents, frames, doc_words, lengths), context, topic) in enumerate(zip(parts, contexts, topics)):
        seen, at = set(), 0
        for s, f, n in zip(sents, frames, lengths):
            if n >= cfg.min_words and f not in seen and eligible(doc_words[at:at + n], context, cfg):
                seen.add(f)
                stats.add(f, s, topic, d)
            at += n
    limit = _threshold(cfg, len(parts))
    keys = MinHasher().band_keys(stats.frames)
    bucket_keys, bucket_counts = bucket_sizes(keys, stats.df)
    groups = families(stats, keys, bucket_keys, bucket_counts, min_bucket(limit), cfg.paraphrase_jaccard,
                      cfg.family_merge_jaccard, max(3.0, limit / 10))
    return family_patterns(stats, groups, limit, min(cfg.min_topics, len(set(topics))), cfg,
                           lambda docs: request.explains(docs, cfg))


def mine_spans(docs: list[list[str]], contexts, topics, cfg: TemplateParams,
               request: RequestWords | None = None) -> list[dict]:
    """Frequent word spans: n-grams (n = cfg.ngram) recurring across responses (docs: the words of each),
    merged into maximal spans."""
    n = cfg.ngram
    limit = _threshold(cfg, len(docs))
    need_topics = min(cfg.min_topics, len(set(topics)))
    df: Counter[tuple] = Counter()
    doc_grams = []
    for w, context in zip(docs, contexts):
        copied = copied_positions(w, context)
        grams = {tuple(w[i:i + n]) for i in range(len(w) - n + 1) if copied.isdisjoint(range(i, i + n))}
        df.update(grams)
        doc_grams.append(grams)
    common = {g for g, c in df.items() if c >= limit}
    topic_sets: dict[tuple, set] = defaultdict(set)
    samples: dict[tuple, list] = defaultdict(list)
    for d, (grams, topic) in enumerate(zip(doc_grams, topics)):  # only the n-grams common enough to matter
        for g in grams & common:
            topic_sets[g].add(topic)
            if len(samples[g]) < SAMPLES:
                samples[g].append(d)
    frequent = {g for g in common if len(topic_sets[g]) >= need_topics
                and not (request and request.explains(samples[g], cfg))}
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
    return spans_at(w, [i for i in range(len(w) - n + 1) if tuple(w[i:i + n]) in frequent], n)


def spans_at(w: list[str], starts: list[int], n: int) -> list[str]:
    """maximal_spans, given the (increasing) start positions of the frequent n-grams."""
    spans, start, last = [], None, None
    for i in starts:
        if start is not None and i > last + 1:
            spans.append(" ".join(w[start:last + n]))
            start = None
        if start is None:
            start = i
        last = i
    if start is not None:
        spans.append(" ".join(w[start:last + n]))
    return spans


def frame_pattern(i: int, f: dict) -> dict:
    """A mined family as stored in patterns.json: what a person reads, and the anchors match_patterns uses."""
    return {"id": f"frame-{i}", "kind": "mined_frame", "text": f["example"], "frame": f["frame"],
            "variants": f["variants"][:SHOWN], "variant_counts": f["variant_counts"][:SHOWN],
            "variant_total": len(f["variants"]), "anchors": f["anchors"], "jaccard": f["jaccard"],
            "doc_freq": f["doc_freq"]}


class Covered:
    """The word n-grams of what earlier patterns already report: a span that shares one is their fixed part,
    or their text run on into the next sentence's first words, and is reported once, under the earlier one."""

    def __init__(self, n: int):
        self.n, self.grams = n, set()

    def add(self, texts) -> None:
        for t in texts:
            w = words(t)
            self.grams.update(tuple(w[i:i + self.n]) for i in range(len(w) - self.n + 1))

    def __contains__(self, span: str) -> bool:
        w = span.split()
        return any(tuple(w[i:i + self.n]) in self.grams for i in range(len(w) - self.n + 1))


def build_patterns(texts: list[str], cfg: TemplateParams, contexts: list[str] | None = None,
                   topics: list | None = None) -> list[dict]:
    request = RequestWords(contexts, len(texts))
    contexts = [context_grams(c) for c in contexts] if contexts else [frozenset()] * len(texts)
    topics = topics or [None] * len(texts)
    patterns = [{"id": f"phrase-{i}", "kind": "known_phrase", "text": p} for i, p in enumerate(cfg.known_phrases)]
    patterns += [{"id": f"regex-{i}", "kind": "known_regex", "text": p} for i, p in enumerate(cfg.known_regexes)]
    if cfg.mine:
        # A finding already covered by an earlier pattern (a mined frame that is part of a known phrase,
        # a span that is the fixed part of a frame) is reported once, under the earlier pattern.
        covered = [_joined(p["text"]) for p in patterns if p["kind"] == "known_phrase"]
        covered_grams = Covered(cfg.ngram)
        covered_grams.add(covered)
        parts = sentence_parts(texts)  # parsed once for both miners
        for i, f in enumerate(mine_frames(parts, contexts, topics, cfg, request)):
            if not any(_joined(f["example"]) in c for c in covered):
                patterns.append(frame_pattern(i, f))
                covered_grams.add(f["examples"])
        for i, s in enumerate(mine_spans([p[2] for p in parts], contexts, topics, cfg, request)):
            if s["span"] not in covered_grams:
                patterns.append({"id": f"span-{i}", "kind": "mined_span", "text": s["span"], "doc_freq": s["doc_freq"]})
    return patterns


def near_duplicate_patterns(ids: list[str], texts: list[str], clusters: list[list[int]], cfg: TemplateParams) -> list[dict]:
    """Clusters of near-duplicate responses big enough to be a template, as patterns of their members."""
    return [{"id": f"neardup-{k}", "kind": "near_duplicate", "text": texts[c[0]], "doc_freq": len(c),
             "members": [ids[i] for i in c]}
            for k, c in enumerate(c for c in clusters if len(c) > cfg.max_templates)]


def family_index(patterns: list[dict]) -> FamilyIndex:
    """One index over every mined frame pattern's anchors (its variants, in a patterns.json that has none)."""
    index = FamilyIndex()
    for p in patterns:
        if p["kind"] == "mined_frame":
            for a in p.get("anchors") or p["variants"]:
                index.add(p["id"], a, p.get("jaccard", 1.0))
    return index


def _matcher(pattern: dict):
    kind = pattern["kind"]
    if kind == "known_phrase":
        needle = pattern["text"].lower()
        return lambda rid, text, frames, joined: needle in text.lower()
    if kind == "known_regex":
        rx = re.compile(pattern["text"], re.I)
        return lambda rid, text, frames, joined: rx.search(text) is not None
    if kind == "mined_frame":
        index = family_index([pattern])
        return lambda rid, text, frames, joined: any(index.match(f) for f in frames)
    if kind in ("mined_span", "overrepresented"):  # a run of words (overrep.py's n-grams, when flagged)
        needle = f" {pattern['text']} "
        return lambda rid, text, frames, joined: needle in joined
    members = set(pattern["members"])  # near_duplicate: membership, decided when the cluster was found
    return lambda rid, text, frames, joined: rid in members


def match_patterns(texts: list[str], patterns: list[dict], ids: list[str] | None = None) -> list[list[str]]:
    """For each text, the ids of the patterns it contains (in pattern order). Mined frames share one index:
    a sentence matches a family when it is within paraphrase_jaccard of one of the family's anchors."""
    index = family_index(patterns)
    order = {p["id"]: k for k, p in enumerate(patterns)}
    matchers = [(p["id"], _matcher(p)) for p in patterns if p["kind"] != "mined_frame"]
    ids = ids or [None] * len(texts)
    out = []
    all_frames = parse_texts(texts)[1]
    flat = [f for fs in all_frames for f in fs]
    found = iter(index.match_all(flat))
    for rid, text, frames in zip(ids, texts, all_frames):
        pids = {pid for _ in frames for pid in next(found)}
        frames = set(frames)
        joined = _joined(text) if matchers else ""
        pids.update(pid for pid, m in matchers if m(rid, text, frames, joined))
        out.append(sorted(pids, key=order.__getitem__))
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
