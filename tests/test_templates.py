import random

from distillery.params import TemplateParams
from distillery.templates import build_patterns, flag_templated, frame, pattern_report, template_rate

VOCAB = [a + b for a in ("ka", "lo", "mi", "su", "te", "ra", "vo", "ne", "pi", "da") for b in ("rn", "sk", "lt", "mp", "ve", "zo")] + ["sunny", "rain", "coat", "walk", "bring", "cold", "mild"]
CITIES = ["Paris", "Rome", "Oslo", "Lima", "Tokyo", "Cairo", "Seoul", "Austin"]


def corpus(n=200, seed=0):
    rng = random.Random(seed)
    texts = []
    for i in range(n):
        city = rng.choice(CITIES)
        facts = f"{city} is {rng.choice(['sunny', 'rainy', 'cold', 'mild'])} at {rng.randint(0, 30)} degrees today."
        if i % 2 == 0:  # half templated: a frame with a slot that varies
            texts.append(f"Here's the information you requested for {city}. {facts}")
        else:  # varied: random words, so no sentence recurs
            texts.append(" ".join(rng.choice(VOCAB) for _ in range(12)).capitalize() + ".")
    return texts


def test_frame_folds_slots_and_numbers():
    assert frame("Here's the information you requested for Paris.") == frame(
        "Here's the information you requested for Rome!")
    assert frame("It is 21 degrees.") == frame("It is 3.5 degrees.")


def test_mining_finds_an_unlisted_slot_frame():
    texts = corpus()
    patterns = build_patterns(texts, TemplateParams(min_count=10, min_share=0.05))
    mined = [p for p in patterns if p["kind"] == "mined_frame"]
    assert any("information you requested for {x}" in p["frame"] for p in mined)
    assert all(p["doc_freq"] >= 10 for p in mined)


def test_keep_first_max_templates_and_flag_the_rest():
    texts = corpus()
    ids = [f"r{i}" for i in range(len(texts))]
    patterns = build_patterns(texts, TemplateParams(min_count=10, min_share=0.05))
    matches, flagged = flag_templated(ids, texts, patterns, max_templates=5)
    templated = [rid for rid, m in zip(ids, matches) if m]
    assert template_rate(matches) == 0.5
    assert flagged == templated[5:]  # the first five of the pattern are kept, in corpus order
    report = pattern_report(patterns, ids, matches, set(flagged))
    top = next(p for p in report if "requested" in p["text"])
    assert top["count"] == 100 and top["flagged"] == 95 and top["example_ids"][0] == "r0"


def test_known_phrases_and_regexes_match_case_insensitively():
    cfg = TemplateParams(known_phrases=["i hope this helps"], known_regexes=[r"climate is what we \w+"], mine=False)
    texts = ["Sunny. I HOPE THIS HELPS!", "Climate is what we expect.", "Plain answer."]
    patterns = build_patterns(texts, cfg)
    matches, _ = flag_templated(["a", "b", "c"], texts, patterns, max_templates=0)
    assert matches == [["phrase-0"], ["regex-0"], []]


def test_varied_text_yields_no_mined_pattern():
    texts = [f"Answer number {i} says something different about topic {i * 7}." for i in range(100)]
    texts = [t.replace("number", random.Random(i).choice(["alpha", "beta", "gamma", "delta", "zeta"]))
             + f" Token{i}" for i, t in enumerate(texts)]
    cfg = TemplateParams(min_count=30, min_share=0.3)
    assert [p for p in build_patterns(texts, cfg) if p["kind"] == "mined_frame"] == []
