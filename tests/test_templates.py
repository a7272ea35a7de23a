import random

from distillery.params import TemplateParams
from distillery.text.templates import build_patterns, flag_templated, frame, pattern_report, template_rate

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
    rng = random.Random(5)
    texts = [" ".join(rng.choice(VOCAB) for _ in range(15)).capitalize() + "." for _ in range(300)]
    cfg = TemplateParams(min_count=10, min_share=0.03)
    assert [p for p in build_patterns(texts, cfg) if p["kind"].startswith("mined")] == []


def test_light_paraphrases_are_one_pattern_with_variants():
    rng = random.Random(2)
    variants = ["I hope this information helps you plan your day.",
                "I hope this information helps you plan the day.",
                "I hope that this information helps you plan your day."]
    texts = [f"{' '.join(rng.choice(VOCAB) for _ in range(10))}. {variants[i % 3]}" for i in range(90)]
    frames = [p for p in build_patterns(texts, TemplateParams(min_count=50, min_share=0.1, ngram=12))
              if p["kind"] == "mined_frame"]
    assert len(frames) == 1 and len(frames[0]["variants"]) == 3 and frames[0]["doc_freq"] == 90


def test_span_inside_a_sentence_is_mined_across_topics_only():
    rng = random.Random(3)
    texts, topics = [], []
    for i in range(120):
        filler = " ".join(rng.choice(VOCAB) for _ in range(6))
        texts.append(f"{filler.capitalize()} as always it is a pleasure to help {rng.choice(VOCAB)}.")
        topics.append(["weather", "flights", "hotels"][i % 3])
    cfg = TemplateParams(min_count=20, min_share=0.1)
    spans = [p for p in build_patterns(texts, cfg, topics=topics) if p["kind"] == "mined_span"]
    assert [p["text"] for p in spans] == ["as always it is a pleasure to help"]
    # The same phrase in weather answers only, while the corpus also has flights answers without it:
    others = [" ".join(rng.choice(VOCAB) for _ in range(12)) + "." for _ in range(60)]
    one_topic = build_patterns(texts + others, TemplateParams(min_count=20, min_share=0.1, min_topics=2),
                               topics=["weather"] * 120 + ["flights"] * 60)
    assert [p for p in one_topic if p["kind"] == "mined_span"] == []  # content of one topic, not a template


def test_text_copied_from_the_tool_result_is_not_a_template():
    texts = [f"The forecast says light rain with strong gusts from the north today number {i}." for i in range(50)]
    contexts = ["[tool result] light rain with strong gusts from the north today"] * 50
    cfg = TemplateParams(min_count=10, min_share=0.1, min_topics=1)
    assert [p for p in build_patterns(texts, cfg, contexts=contexts) if p["kind"].startswith("mined")] == []
    assert [p for p in build_patterns(texts, cfg) if p["kind"].startswith("mined")] != []


def test_two_separate_stock_phrases_in_one_answer_are_both_found():
    """Each answer carries two stock phrases mid-sentence, with varied words between and around them;
    merging n-grams into spans once cut the first span one word too long, so it was never found."""
    rng = random.Random(3)
    first, second = "as always pack a light layer just in case", "the local forecast office updates this hourly"
    texts = []
    for _ in range(120):
        w = lambda k: " ".join(rng.choice(VOCAB) for _ in range(k))  # noqa: E731
        texts.append(f"{w(4)} {first} {w(5)} {second} {w(4)}.")
    cfg = TemplateParams(min_count=10, min_share=0.05, min_words=50, ngram=4, mine=True)
    spans = [p["text"] for p in build_patterns(texts, cfg) if p["kind"] == "mined_span"]
    assert first in spans and second in spans


def test_batched_parsing_splits_and_frames_each_text_as_on_its_own():
    """parse_texts joins a batch to run each regex once; whitespace, digits and non-ASCII must not leak
    from one text into the next, and sentences must split as the look-behind regex always did."""
    import re

    from distillery.text.templates import frames_of, parse_texts
    from distillery.text.tokens import sentences

    old_split = re.compile(r"(?<=[.!?])\s+|\n+")
    texts = ["Hello\tWorld.  It is 3.5 degrees in\u00a0Paris!\n\nOk then Rome, 4,000 people. ", "", "   ",
             "A.B. c", "a \n. b", "What?! Yes\r\nNo.\u2028x", "a.\xa0b", "x!\ty?\n z", "  Lead Space. Next  Word",
             "Plain text. Two sentences here"] + corpus(30)
    for batch in (texts, [t for t in texts if t.isascii()], texts[-30:]):
        sents, frames = parse_texts(batch)
        assert sents == [[s.strip() for s in old_split.split(t) if s.strip()] for t in batch]
        assert sents == [sentences(t) for t in batch]
        assert frames == [[frame(s) for s in ss] for ss in sents] == [frames_of(ss) for ss in sents]
