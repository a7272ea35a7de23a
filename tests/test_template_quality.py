"""Precision and recall of template mining on responses with templates injected at known rates."""
import random

from distillery.testing.injected import make_responses
from distillery.params import TemplateParams
from distillery.text.templates import build_patterns, match_patterns


def detection(n=2000, seed=0):
    texts, topics, truth = make_responses(n, seed)
    patterns = build_patterns(texts, TemplateParams(min_count=20, min_share=0.02), topics=topics)
    found = [bool(m) for m in match_patterns(texts, patterns)]
    tp = sum(f and t is not None for f, t in zip(found, truth))
    precision = tp / max(1, sum(found))
    recall = tp / sum(t is not None for t in truth)
    return precision, recall, patterns, texts, truth, found


def test_mining_finds_injected_templates_with_high_precision_and_recall():
    precision, recall, patterns, *_ = detection()
    assert precision >= 0.99 and recall >= 0.99, (precision, recall)
    # Each injected template is reported once: the paraphrase family as one pattern with its variants.
    assert len(patterns) == 4, [p["text"] for p in patterns]
    family = [p for p in patterns if len(p.get("variants", [])) == 3]
    assert len(family) == 1 and family[0]["text"].startswith("I hope")


def test_recall_per_kind_including_the_slot_frame():
    _, _, _, texts, truth, found = detection(seed=1)
    for kind in ("opener", "closer", "frame", "paraphrase"):
        hits = [f for f, t in zip(found, truth) if t == kind]
        assert sum(hits) / len(hits) >= 0.99, kind


# --- Paraphrase families on real-looking answers (make_answers): drifting wordings, task-alike look-alikes ---

import pytest  # noqa: E402
from collections import Counter, defaultdict  # noqa: E402

from distillery.testing.injected import FAMILIES, light_edit, make_answers  # noqa: E402
from distillery.text.tokens import sentences  # noqa: E402

HARD = TemplateParams(min_count=30, min_share=0.01, min_topics=2)


def kind_class(kind):
    return None if kind is None else {"opener": "exact", "closer": "exact"}.get(kind, kind.split(":")[0].split("_")[0])


def sentence_scores(answers, patterns):
    """Per class (exact, slot, family): (recall, precision, injected) over sentences. An injected sentence is
    found when a pattern matches it; a matched sentence is a false positive of its pattern's class (the class
    most of that pattern's sentences have) when it is not an injected sentence of that class."""
    hits, found = defaultdict(list), set()
    for i, text in enumerate(answers.texts):
        kind_of = {s: k for k, s in answers.injected[i].items()}
        sents = sentences(text)
        for s, pids in zip(sents, match_patterns(sents, patterns)):
            for pid in pids:
                hits[pid].append(kind_class(kind_of.get(s)))
                if s in kind_of:
                    found.add((i, kind_of[s]))
    owner = {pid: Counter(h).most_common(1)[0][0] for pid, h in hits.items()}
    out = {}
    for c in ("exact", "slot", "family"):
        injected = [(i, k) for i, inj in enumerate(answers.injected) for k in inj if kind_class(k) == c]
        matched = [x for pid, h in hits.items() if owner[pid] == c for x in h]
        out[c] = (sum(x in found for x in injected) / len(injected),
                  sum(x == c for x in matched) / max(1, len(matched)), len(injected))
    flagged = [x for h in hits.values() for x in h]
    out["precision"] = sum(x is not None for x in flagged) / len(flagged)
    return out


@pytest.fixture(scope="module")
def mined():
    answers = make_answers(3000, seed=2)
    return answers, build_patterns(answers.texts, HARD, answers.contexts, answers.topics)


def test_drifting_paraphrase_families_are_found_once_each(mined):
    """Three stock sentences, each with 2-4 base wordings and a light edit at every occurrence (no wording
    more than twice), in 5% of 80-400-word answers; exact and slot-filled templates alongside."""
    answers, patterns = mined
    wordings = Counter(s for inj in answers.injected for k, s in inj.items() if k.startswith("family"))
    assert max(wordings.values()) <= 2
    scores = sentence_scores(answers, patterns)
    assert scores["family"][0] >= 0.9 and scores["family"][1] >= 0.95, scores  # issue: 0.8 recall at 0.95
    assert scores["exact"][0] >= 0.99 and scores["slot"][0] >= 0.99, scores
    assert scores["precision"] >= 0.95, scores
    families = [p for p in patterns if p.get("variant_total", 0) > 6]
    assert len(families) == len(FAMILIES), [p["text"] for p in families]  # each family once, with its variants
    for p in families:
        assert len(p["variants"]) == len(p["variant_counts"]) and max(p["variant_counts"]) <= 2
        assert sum(c >= 1 for c in p["variant_counts"]) == len(p["variants"]) and p["doc_freq"] >= HARD.min_count


def test_a_stored_family_matches_new_drift_but_not_other_sentences(mined):
    """regenerate checks rewrites against patterns.json: a rewrite that keeps the stock sentence with yet
    another edit must still match, an unrelated sentence must not."""
    answers, patterns = mined
    rng = random.Random(9)
    seen = {s for inj in answers.injected for s in inj.values()}
    fresh = [e for e in (light_edit(rng, light_edit(rng, rng.choice(FAMILIES["change"]))) for _ in range(50))
             if e not in seen][:20]
    assert sum(bool(m) for m in match_patterns(fresh, patterns)) >= 0.9 * len(fresh)
    others = ["Keep your receipts, since the bank may change the fee quickly.",
              "I hope the weather stays dry for your trip to the coast."]
    assert match_patterns(others, patterns) == [[], []]


def test_sentences_the_task_makes_alike_are_not_templates():
    """Tool results restated, a formula with the user's numbers, a birthday greeting the user asked for: they
    recur, across answers of every kind when records have no topics, and the request explains them."""
    answers = make_answers(1500, seed=3)
    cfg = TemplateParams(min_count=15, min_share=0.01)
    guarded = build_patterns(answers.texts, cfg, answers.contexts)  # no topics: request_lift alone
    assert sentence_scores(answers, guarded)["precision"] >= 0.95
    unguarded = build_patterns(answers.texts, TemplateParams(min_count=15, min_share=0.01, request_lift=0),
                               answers.contexts)
    flagged = {k for i, m in enumerate(match_patterns(answers.texts, unguarded)) if m for k in answers.negatives[i]}
    assert sentence_scores(answers, unguarded)["precision"] < 0.8 and flagged >= {"restated", "formula", "greeting"}
