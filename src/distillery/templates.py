"""Find templated responses: known phrases and regexes from params, plus mined repeated sentences.

Mining needs no list: each response is split into sentences; a sentence is normalised into a *frame*
(lower case, numbers → #, capitalised words inside the sentence → {X}, so "…requested for Paris" and
"…requested for Rome" are one frame), and a frame that recurs in at least max(min_count,
min_share × N) responses is a template. Each response is assigned to the first pattern it matches;
the first `max_templates` responses of each pattern are kept, the rest are flagged for regeneration.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from distillery.params import TemplateParams

SENTENCE = re.compile(r"(?<=[.!?])\s+|\n+")
INNER_CAPITAL = re.compile(r"(?<=\s)[A-Z][\w'-]*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)?")


def sentences(text: str) -> list[str]:
    return [s.strip() for s in SENTENCE.split(text) if s.strip()]


def frame(sentence: str) -> str:
    s = INNER_CAPITAL.sub("{X}", sentence)
    s = NUMBER.sub("#", s)
    return re.sub(r"\s+", " ", s.lower()).strip(" .!?")


def mine_frames(texts: list[str], cfg: TemplateParams) -> list[tuple[str, int, str]]:
    """(frame, document frequency, an example sentence) for each frame past the thresholds."""
    df: Counter[str] = Counter()
    example: dict[str, str] = {}
    for text in texts:
        frames = {}
        for s in sentences(text):
            if len(s.split()) >= cfg.min_words:
                frames.setdefault(frame(s), s)
        df.update(frames.keys())
        for f, s in frames.items():
            example.setdefault(f, s)
    threshold = max(cfg.min_count, cfg.min_share * len(texts))
    return [(f, n, example[f]) for f, n in df.most_common() if n >= threshold]


def build_patterns(texts: list[str], cfg: TemplateParams) -> list[dict]:
    patterns = [{"id": f"phrase-{i}", "kind": "known_phrase", "text": p} for i, p in enumerate(cfg.known_phrases)]
    patterns += [{"id": f"regex-{i}", "kind": "known_regex", "text": p} for i, p in enumerate(cfg.known_regexes)]
    if cfg.mine:
        patterns += [{"id": f"mined-{i}", "kind": "mined_frame", "text": example, "frame": f, "doc_freq": n}
                     for i, (f, n, example) in enumerate(mine_frames(texts, cfg))]
    return patterns


def _matcher(pattern: dict):
    if pattern["kind"] == "known_phrase":
        needle = pattern["text"].lower()
        return lambda text, frames: needle in text.lower()
    if pattern["kind"] == "known_regex":
        rx = re.compile(pattern["text"], re.I)
        return lambda text, frames: rx.search(text) is not None
    return lambda text, frames: pattern["frame"] in frames


def match_patterns(texts: list[str], patterns: list[dict]) -> list[list[str]]:
    """For each text, the ids of the patterns it contains (in pattern order)."""
    matchers = [(p["id"], _matcher(p)) for p in patterns]
    out = []
    for text in texts:
        frames = {frame(s) for s in sentences(text)}
        out.append([pid for pid, m in matchers if m(text, frames)])
    return out


def flag_templated(ids: list[str], texts: list[str], patterns: list[dict], max_templates: int):
    """(matches per text, ids to regenerate): keep the first max_templates of each pattern, flag the rest."""
    matches = match_patterns(texts, patterns)
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
    return [{**{k: v for k, v in p.items() if k != "frame"}, "frame": p.get("frame"),
             "count": len(members[p["id"]]),
             "flagged": sum(r in flagged for r in members[p["id"]]),
             "example_ids": members[p["id"]][:5]} for p in patterns]
