"""Precision and recall of template mining on responses with templates injected at known rates."""
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
