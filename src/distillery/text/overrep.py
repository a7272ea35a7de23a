"""Stock phrases: the words and phrases a corpus uses far more often than people do.

An LLM leans on a few words ("delve", "tapestry") and phrases ("i hope this helps") far beyond their share
of human text, long before any one of them recurs enough to be mined as a template. This module ranks
the corpus's word n-grams by how over-represented they are against a human baseline: wordfreq's tables
(they ship in its wheel, so it works offline), or a reference corpus of human text the user names.
The list informs a reader; nothing here flags or changes an answer.

Counted, answer by answer and sentence by sentence (an n-gram never crosses a sentence end): word
1- to max_n-grams, and longer *spans*, runs of over-represented max_n-grams overlapping word by word
("i hope this" + "hope this helps" → "i hope this helps"). Not counted, so that the content of the
answers does not drown their style: a word with a digit (temperatures, prices, times); a capitalised
word inside a sentence, a name (a city, an airline; "I" excepted), and a name of the answer's own prompt
or tool result wherever it stands ("Prague this weekend: …"); an n-gram found in that prompt or tool
result (copied, not chosen: "this weekend", "light rain").

Score: log2((corpus + a) / (baseline + a)), both frequencies per word token, a = `smoothing` (one per
million words): below that wordfreq's tables (three significant digits) and a corpus of a million words
cannot tell rare from absent. With a reference corpus a is at least one occurrence in it. An n-gram must
occur in at least min_docs answers, so one long answer cannot put a word on the list. A shorter n-gram
is left out when a listed longer one holds it and occurs in about as many answers (≥ absorb × its
count): the list says "i hope this helps" once, not also "hope this helps", "i hope this" and "helps".

The baseline of a phrase. wordfreq has word tables only. Its own phrase estimate, the half-harmonic mean
1/f = Σ 1/f_i, assumes the words always come together: "i hope this helps" gets 45 per million, as
common as "helps". Multiplying the word frequencies (independence) errs the other way: words in a phrase
come together far more often than chance, and the product puts "i hope this helps" at about one in a
trillion words, so every recurring phrase of common words ("the forecast for") would outscore "delve". A
product with a conditional correction (P(w | previous) ≈ K·P(w)) needs one K, and real phrases need K from
a few ("of the") to hundreds ("let me know"). So a phrase's baseline is the bound that needs no
assumption: a phrase is never more common than its rarest word. Its ratio is then a floor, the report
shows it as "≥", and a phrase never outscores its rarest word by guesswork. A reference corpus counts
phrases directly, so there the baseline is measured, not bounded.
"""
from __future__ import annotations

import math
import re
from collections import Counter
from pathlib import Path

from distillery.text.tokens import sentences

WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")  # Unicode letters and digits, with inner apostrophes: "don't"
DIGIT = re.compile(r"\d")
CLAUSE = re.compile(r"[.!?\]\n]")  # where a capital may start a sentence: render_context tags lines "[user] …"


def _is_name(word: str) -> bool:
    return word[0].isupper() and word != "I" and not word.startswith("I'")


def names(context: str) -> set[str]:
    """Names in the prompt or tool result (capitalised words not starting a sentence), lower-cased: in the
    answer they are not counted even where a sentence starts with one ("Prague this weekend: …")."""
    return {w.lower() for part in CLAUSE.split(context) for w in WORD.findall(part)[1:]
            if w[0].isupper() and _is_name(w)}


def tokenize(text: str, skip: set[str] | frozenset = frozenset()) -> tuple[list[list[str]], int]:
    """(runs of counted words, lower-cased, the number of words): an n-gram lies inside one run. A sentence
    ends a run, and so does a word not counted: with a digit, a name (capitalised inside a sentence), or
    in `skip`."""
    runs, total = [], 0
    for sentence in sentences(text.replace("\u2019", "'")):
        found = WORD.findall(sentence)
        total += len(found)
        digits = DIGIT.search(sentence) is not None
        run: list[str] = []
        for i, w in enumerate(found):
            low = w.lower()
            if (low != w and i and _is_name(w)) or low in skip or (digits and DIGIT.search(w)):
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(low)
        if run:
            runs.append(run)
    return runs, total


def ngrams(seq: list[str], n: int) -> list[str]:
    """The n-gram starting at each position of a run of words ("w1 w2 …")."""
    return list(seq) if n == 1 else list(map(" ".join, zip(*(seq[i:] for i in range(n)))))


def _context_grams(context: str, max_n: int) -> set[str]:
    w = WORD.findall(context.replace("\u2019", "'").lower())
    return set().union(*(ngrams(w, n) for n in range(1, max_n + 1)))


def _runs(starts: list[int]) -> list[list[int]]:
    """Consecutive starts grouped: [1, 2, 3, 7, 8] → [[1, 2, 3], [7, 8]]."""
    runs: list[list[int]] = []
    for i in starts:
        if runs and i == runs[-1][-1] + 1:
            runs[-1].append(i)
        else:
            runs.append([i])
    return runs


def _tally(found: list[str], df: Counter, extra: Counter) -> None:
    """One answer's n-grams into df (answers containing each) and extra (occurrences after the first in an
    answer; occurrences = df + extra): a set and a rare small update, not two passes over the big table."""
    unique = set(found)
    df.update(unique)
    if len(unique) < len(found):
        extra.update({g: c - 1 for g, c in Counter(found).items() if c > 1})


def count_ngrams(docs: list[list[list[str]]], contexts: list[str], max_n: int):
    """(df, extra, copied) of the 1- to max_n-grams of tokenised answers; copied[i], the n-grams of answer i
    found in contexts[i], which are not counted for it."""
    df: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    copied = []
    for seqs, context in zip(docs, contexts):
        found = [g for seq in seqs for n in range(1, min(max_n, len(seq)) + 1) for g in ngrams(seq, n)]
        skip = _context_grams(context, max_n).intersection(found) if context.strip() else set()
        _tally([g for g in found if g not in skip] if skip else found, df, extra)
        copied.append(skip)
    return df, extra, copied


def count_spans(docs: list[list[list[str]]], copied: list[set], frequent: set[str], n: int, max_span: int):
    """(df, extra) of spans longer than n words: runs of overlapping `frequent` n-grams, and every piece of
    a run up to max_span words long, so a span's df is the answers that contain it."""
    df: Counter[str] = Counter()
    extra: Counter[str] = Counter()
    for seqs, skip in zip(docs, copied):
        found = []
        for seq in (seq for seq in seqs if len(seq) > n):  # a shorter run holds no span
            starts = [i for i, g in enumerate(ngrams(seq, n)) if g in frequent and g not in skip]
            for run in _runs(starts):
                words = seq[run[0]:run[-1] + n]
                if len(words) > max_span:
                    found.append(" ".join(words))
                found += [" ".join(words[i:i + k]) for k in range(n + 1, min(max_span, len(words)) + 1)
                          for i in range(len(words) - k + 1)]
        _tally(found, df, extra)
    return df, extra


def wordfreq_baseline(grams, lang: str = "en") -> dict[str, float]:
    """Per-token frequency in wordfreq's tables: a word's own; a phrase's rarest word's (an upper bound)."""
    import wordfreq

    word: dict[str, float] = {}
    out = {}
    for g in grams:
        for w in g.split():
            if w not in word:
                word[w] = wordfreq.word_frequency(w, lang)
        out[g] = min(word[w] for w in g.split())
    return out


def reference_counts(grams, reference: list[list[list[str]]]) -> dict[str, int]:
    """Occurrences of each n-gram in the tokenised reference texts."""
    wanted = set(grams)
    counts: Counter[str] = Counter()
    for n in sorted({len(g.split()) for g in wanted}):
        counts.update(g for seqs in reference for seq in seqs for g in ngrams(seq, n) if g in wanted)
    return {g: counts[g] for g in wanted}


def read_reference(path: Path | str) -> list[str]:
    """Human text for the baseline: a .jsonl file (each line a string, or an object with a `text` field)
    or any other file as plain text, one text a line."""
    from distillery.records import RecordError, read_jsonl

    path = Path(path)
    if path.suffix != ".jsonl":
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    texts = []
    for line, value in read_jsonl(path):
        text = value if isinstance(value, str) else value.get("text") if isinstance(value, dict) else None
        if not isinstance(text, str):
            raise RecordError(path, line, "a reference line must be a JSON string or an object with a 'text' string")
        texts.append(text)
    return texts


def overrepresented(texts: list[str], contexts: list[str] | None = None, *, lang: str = "en",
                    reference: list[str] | None = None, max_n: int = 3, max_span: int = 8, min_docs: int = 10,
                    min_log_ratio: float = 1.0, smoothing: float = 1e-6, absorb: float = 0.8) -> list[dict]:
    """The n-grams of `texts` most over-represented against the baseline, highest log ratio first.

    `contexts[i]` is the prompt and tool result of `texts[i]` (n-grams found there are not counted for
    it); `reference`, human texts to count the baseline from instead of wordfreq's `lang` tables. Each row:
    ngram, words, answers (containing it), share (of all answers), count (occurrences), corpus and
    baseline per million words, baseline_is_bound (a phrase against wordfreq: the baseline is an upper
    bound, the ratio a floor), ratio and log2_ratio. Only rows with log2_ratio ≥ min_log_ratio.
    """
    contexts = [""] * len(texts) if contexts is None else contexts
    if len(contexts) != len(texts):
        raise ValueError(f"overrepresented: {len(texts)} texts but {len(contexts)} contexts")
    # A capitalised word of a context is a name unless answers write it in lower case too ("The Linden").
    lower = {w for w in set(WORD.findall("\n".join(texts))) if w.islower()}
    answers = [tokenize(t, names(c) - lower if c.strip() else frozenset()) for t, c in zip(texts, contexts)]
    docs, total = [runs for runs, _ in answers], sum(size for _, size in answers)
    if not total:
        return []
    human = [tokenize(t) for t in reference] if reference is not None else []
    human_runs, human_total = [runs for runs, _ in human], sum(size for _, size in human)
    # Unseen in a reference corpus means "about once in it", not "never in English".
    a = max(smoothing, 1 / human_total) if human_total else smoothing

    def score(df: Counter, extra: Counter) -> list[dict]:
        grams = [g for g, d in df.items() if d >= min_docs]
        if reference is None:
            base = wordfreq_baseline(grams, lang)
        else:
            base = {g: c / max(1, human_total) for g, c in reference_counts(grams, human_runs).items()}
        rows = []
        for g in grams:
            corpus, words = (df[g] + extra[g]) / total, g.count(" ") + 1
            log_ratio = math.log2((corpus + a) / (base[g] + a))
            rows.append({"ngram": g, "words": words, "answers": df[g], "share": round(df[g] / len(texts), 4),
                         "count": df[g] + extra[g], "corpus_per_million": round(corpus * 1e6, 2),
                         "baseline_per_million": round(base[g] * 1e6, 3),
                         "baseline_is_bound": reference is None and words > 1,
                         "ratio": round(2 ** log_ratio, 2), "log2_ratio": round(log_ratio, 3)})
        return rows

    df, extra, copied = count_ngrams(docs, contexts, max_n)
    rows = score(df, extra)
    # Spans link every max_n-gram used more than its baseline, not only the listed ones: a stock sentence
    # has common-word links ("…overcoat at home and let the sun…") whose bound ratio is low.
    links = {r["ngram"] for r in rows if r["words"] == max_n and r["log2_ratio"] > 0}
    if links:
        rows += score(*count_spans(docs, copied, links, max_n, max_span))
    rows = drop_subgrams([r for r in rows if r["log2_ratio"] >= min_log_ratio], absorb)
    return sorted(rows, key=lambda r: (-r["log2_ratio"], -r["answers"], r["ngram"]))


def answers_containing(texts: list[str], grams: list[str]) -> dict[str, int]:
    """How many of `texts` contain each n-gram, counted the way overrepresented() counts: for following a
    listed phrase through a change of the corpus (regenerate's before and after)."""
    counts = dict.fromkeys(grams, 0)
    for text in texts:
        runs = [f" {' '.join(run)} " for run in tokenize(text)[0]]
        for g in grams:
            counts[g] += any(f" {g} " in run for run in runs)
    return counts


def drop_subgrams(rows: list[dict], absorb: float) -> list[dict]:
    """Rows without the n-grams that a longer row holds and occurs in at least absorb × as many answers.

    Longest first, and only a row still kept absorbs, so each decision is final when it is used.
    """
    answers = {r["ngram"]: r["answers"] for r in rows}
    dropped: set[str] = set()
    for r in sorted(rows, key=lambda r: -r["words"]):
        if r["ngram"] in dropped:
            continue
        w = r["ngram"].split()
        for k in range(1, len(w)):
            for i in range(len(w) - k + 1):
                sub = " ".join(w[i:i + k])
                if sub in answers and r["answers"] >= absorb * answers[sub]:
                    dropped.add(sub)
    return [r for r in rows if r["ngram"] not in dropped]


def overrep_spec(rows: list[dict], top: int = 25, title: str = "Over-represented words and phrases") -> dict:
    """A static Vega-Lite horizontal bar chart of the top rows: log2 ratio per n-gram, counts in tooltips."""
    from distillery.plots import SCHEMA

    shown = [{**r, "rank": i, "label": _ratio(r), "baseline": "bound: rarest word" if r["baseline_is_bound"]
              else "measured"} for i, r in enumerate(rows[:top])]
    tooltip = [{"field": f, "type": "quantitative" if f != "ngram" else "nominal"}
               for f in ("ngram", "answers", "share", "count", "corpus_per_million", "baseline_per_million", "ratio")]
    bars = {"mark": "bar", "encoding": {"tooltip": tooltip, "color": {"field": "baseline", "type": "nominal",
                                                                      "legend": {"orient": "bottom"}}}}
    labels = {"mark": {"type": "text", "align": "left", "dx": 3},
              "encoding": {"text": {"field": "label", "type": "nominal"}}}
    # Sorted by a rank field: a list of the n-grams as the sort order would be read as Vega expressions ("if").
    return {"$schema": SCHEMA, "title": title, "width": 420, "height": {"step": 18}, "data": {"values": shown},
            "encoding": {"y": {"field": "ngram", "type": "nominal", "sort": {"field": "rank"},
                               "title": None, "axis": {"labelLimit": 360}},
                         "x": {"field": "log2_ratio", "type": "quantitative",
                               "title": "log2(corpus frequency / human baseline)"}},
            "layer": [bars, labels]}


def _ratio(r: dict) -> str:
    return ("≥ " if r["baseline_is_bound"] else "") + f"{r['ratio']:,.0f}×"


def overrep_section(rows: list[dict], baseline: str, top: int = 25, figure: str | None = None) -> list[str]:
    """Markdown lines for a report: what the list is, the figure (a path beside the report), the table."""
    lines = ["## Over-represented words and phrases", "",
             f"The words and phrases these answers use most often relative to human text ({baseline}). "
             "It informs: nothing on it is flagged or regenerated by this list. A phrase found on it in many "
             "answers is a template in the making. The ratio is smoothed (a small constant, about one per million "
             "words, is added to both frequencies), so what the baseline never saw is not infinitely over-represented.",
             ""]
    if any(r["baseline_is_bound"] for r in rows[:top]):
        lines += ["wordfreq has no phrase tables, so a phrase's baseline is its rarest word's frequency (a phrase "
                  "is never more common than that): its ratio is at least the one shown.", ""]
    if not rows:
        return lines + ["No word or phrase is over-represented in enough answers to list.", ""]
    if figure:
        lines += [f"![Over-represented words and phrases]({figure})", ""]
    lines += ["| n-gram | answers | share | corpus per million | baseline per million | ratio |",
              "|---|---|---|---|---|---|"]
    lines += [f"| `{r['ngram']}` | {r['answers']} | {r['share']:.1%} | {r['corpus_per_million']:,.1f} | "
              f"{'≤ ' if r['baseline_is_bound'] else ''}{r['baseline_per_million']:,.2f} | {_ratio(r)} |"
              for r in rows[:top]]
    return lines + [""]
