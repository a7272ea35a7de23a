from distillery.engine.journal import Journal
from distillery.params import RegenerateParams
from distillery.records import subject_text
from distillery.regeneration.rewrite import RegeneratePrompt, regenerate_all
from tests.conftest import ROOT, conversation

PROMPT = RegeneratePrompt(ROOT / "prompts" / "regenerate.md")
STOCK = "I hope this helps! Let me know if you need anything else."
PATTERNS = [{"id": "phrase-0", "kind": "known_phrase", "text": STOCK}]
STYLE = {"twain": ["The sky had made up its mind.", "Rain came down like a sermon.", "A fine day for a lie."]}
CFG = RegenerateParams(max_attempts=2, batch_size=4, n_style_examples=2)


def corpus():
    return [conversation("a", f"Sunny, 20°C. {STOCK}", persona="twain"),
            conversation("b", f"Rain later. {STOCK}", persona="twain"),
            conversation("c", "Already varied and fine.", persona="twain")]


def test_rewrites_flagged_answers_only_and_keeps_tool_calls(make_engine):
    engine = make_engine(responses=["Sunny and twenty degrees, said the sky, smugly.",  # = 20°C: facts kept
                                    f"Rain later. {STOCK}",  # b, attempt 1: still templated → retried
                                    "Rain by evening; carry the umbrella you always forget."])
    records = corpus()
    out = regenerate_all(records, {"a": ["phrase-0"], "b": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1)
    assert [subject_text(r) for r in out] == ["Sunny and twenty degrees, said the sky, smugly.",
                                              "Rain by evening; carry the umbrella you always forget.",
                                              "Already varied and fine."]
    for before, after in zip(records, out):
        assert after["messages"][:-1] == before["messages"][:-1]  # tool calls and results untouched
    assert out[0]["regenerated"] == {"from": f"Sunny, 20°C. {STOCK}", "patterns": ["phrase-0"], "attempt": 1,
                                     "rejected": [], "facts": {"checked": 1, "kept": 1, "inventions": 0}}
    assert out[1]["regenerated"]["attempt"] == 2
    assert out[1]["regenerated"]["rejected"] == [{"reason": "templated", "detail": "still contains phrase-0"}]
    assert "regenerated" not in out[2]


def test_prompt_has_persona_style_examples_and_spans_to_avoid(make_engine):
    engine = make_engine(responses=["A perfectly fresh answer about the sun."])
    regenerate_all(corpus()[:1], {"a": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1)
    call = engine.provider.calls[0]
    prompt = call["messages"][0]["content"]
    assert '"twain" persona' in prompt and f'- "{STOCK}"' in prompt
    assert sum(example in prompt for example in STYLE["twain"]) == 2
    assert "get_weather" in prompt and call["temperature"] == 0.9


def test_original_kept_with_reason_after_max_attempts(make_engine):
    engine = make_engine(responses=[STOCK, "no"])
    out = regenerate_all(corpus()[:1], {"a": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1)
    assert subject_text(out[0]) == subject_text(corpus()[0])
    assert out[0]["regenerated"]["kept_original"] == {"reason": "too_short", "detail": "1 words"}
    assert [r["reason"] for r in out[0]["regenerated"]["rejected"]] == ["templated", "too_short"]


def test_killed_run_resumes_from_the_journal(make_engine, tmp_path):
    journal = Journal(tmp_path / "regenerate.jsonl")
    flagged = {"a": ["phrase-0"], "b": ["phrase-0"]}
    first = regenerate_all(corpus(), flagged, PATTERNS, STYLE, make_engine(), PROMPT, CFG, seed=1, journal=journal)
    engine = make_engine()
    engine.cache.cache.get_many = lambda keys: {}  # the journal alone must answer
    again = regenerate_all(corpus(), flagged, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1, journal=journal)
    assert again == first and engine.provider.calls == []


def test_near_duplicate_of_a_recent_rewrite_is_refused_and_recent_ones_are_shown(make_engine):
    same = "At 20°C the clouds gather over Paris like gossips at a wedding, so carry an umbrella."
    engine = make_engine(responses=[same, same, "Rain by tea time; the umbrella is your friend today."])
    cfg = RegenerateParams(max_attempts=2, batch_size=1, n_style_examples=1, recent_window=10, n_recent_examples=2)
    out = regenerate_all(corpus(), {"a": ["phrase-0"], "b": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, cfg,
                         seed=1)
    assert subject_text(out[0]) == same
    rejected = out[1]["regenerated"]["rejected"][0]
    assert rejected["reason"] == "near_duplicate" and rejected["detail"].startswith("of a recent rewrite")
    assert subject_text(out[1]) == "Rain by tea time; the umbrella is your friend today."
    second_prompt = engine.provider.calls[1]["messages"][0]["content"]
    assert f'- "{same}"' in second_prompt  # the recent rewrite is shown as wording to avoid


def test_cut_off_and_meta_chatter_rewrites_are_rejected_then_the_original_kept(make_engine):
    from distillery.regeneration.rewrite import check_rewrite

    assert check_rewrite("Sunny all day, so leave the coat.", [], truncated=True, max_tokens=40).reason == "truncated"
    for chatter in ("Here's a rewritten version: sunny and warm today.",
                    "The user requested a specific weather update for Oslo today, so I'll use this.",
                    "Sure! Sunny and warm in Paris today."):
        assert check_rewrite(chatter, []).reason == "meta_chatter", chatter
    assert check_rewrite("Sunny and warm in Paris today, so leave the coat.", []) is None


def test_a_document_is_rewritten_and_labels_for_the_old_text_are_dropped(make_engine):
    doc = {"id": "d", "title": "Paris", "text": f"Sunny. {STOCK}", "tags": {"persona": "twain"},
           "labels": {"relevance": 9, "groundedness": 9, "style": 1}, "score": 6.6, "tier": "medium"}
    engine = make_engine(responses=["Sunny enough to forgive the city its pigeons."])
    out = regenerate_all([doc], {"d": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1)
    assert out[0]["text"] == "Sunny enough to forgive the city its pigeons." and out[0]["title"] == "Paris"
    assert "labels" not in out[0] and "tier" not in out[0] and out[0]["regenerated"]["dropped_labels"] is True


def test_a_failed_call_is_not_frozen_into_the_journal(make_engine, tmp_path, monkeypatch):
    journal = Journal(tmp_path / "regenerate.jsonl")
    engine = make_engine()
    monkeypatch.setattr(engine.provider, "fail_marker", "Sunny")
    out = regenerate_all(corpus()[:1], {"a": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT, CFG, seed=1, journal=journal)
    assert out[0]["regenerated"]["kept_original"]["reason"] == "call_failed"
    assert journal.load() == {}  # the next run asks again
