import json

import pytest

from distillery.engine.journal import Journal
from distillery.labeling.oracle import OraclePrompt, build_messages, label_all
from distillery.labeling.reply import ParseError, parse_scores
from tests.conftest import ROOT, conversation

PROMPT = OraclePrompt(ROOT / "prompts" / "oracle.md")


def test_parse_scores_accepts_json_in_prose(filt):
    scores, why = parse_scores('Sure! ```json\n{"scores": {"relevance": 8, "groundedness": 7.5, "style": 3},'
                               ' "reasoning": "ok"}\n```', filt)
    assert scores == {"relevance": 8.0, "groundedness": 7.5, "style": 3.0} and why == "ok"


@pytest.mark.parametrize("reply, problem", [
    ("I think it is good.", "no JSON object"),
    ('{"scores": {"relevance": 8, "groundedness": 7}}', "dimension 'style' missing"),
    ('{"scores": {"relevance": 11, "groundedness": 7, "style": 1}}', "outside 0-10"),
    ('{"scores": {"relevance": "high", "groundedness": 7, "style": 1}}', "not a number"),
    ('{"scores": {"relevance": 8, ', "no JSON object"),
])
def test_parse_scores_rejects_bad_replies(filt, reply, problem):
    with pytest.raises(ParseError, match=problem):
        parse_scores(reply, filt)


def test_prompt_shows_tool_result_answer_and_every_dimension(filt):
    messages = build_messages(conversation("a", "Sunny, 20°C."), PROMPT, filt, json_reply=True)
    assert messages[0]["role"] == "system" and "relevance: on topic" in messages[0]["content"]
    user = messages[1]["content"]
    assert '"temp_c": 20' in user and "Sunny, 20°C." in user and '"style": <0-10>' in user


def test_json_oracle_labels_and_records_unparseable_reply_as_failure(filt, make_engine):
    good = json.dumps({"scores": {"relevance": 9, "groundedness": 8, "style": 7}})
    engine = make_engine(responses=[good, "not json at all"], model="fake-json")
    records = [conversation("a", "Sunny."), conversation("b", "Rainy.")]
    labeled, failures = label_all(records, engine, PROMPT, filt, parse_retries=0)
    assert [r["id"] for r in labeled] == ["a"]
    assert labeled[0]["labels"] == {"relevance": 9.0, "groundedness": 8.0, "style": 7.0}
    assert labeled[0]["score"] == pytest.approx(8.3) and labeled[0]["tier"] == "high"
    assert labeled[0]["oracle"]["prompt_hash"] == PROMPT.hash
    assert failures == [{"id": "b", "stage_reason": "parse_failed", "error": "no JSON object in the reply",
                         "raw": "not json at all"}]
    assert labeled[0]["messages"] == records[0]["messages"]  # no field the label stage does not own is dropped


def test_an_invalid_reply_is_asked_again_with_a_new_sample_then_recorded(filt, make_engine):
    good = json.dumps({"scores": {"relevance": 9, "groundedness": 8, "style": 7}})
    missing = json.dumps({"scores": {"relevance": 9, "groundedness": 8}})
    engine = make_engine(responses=[missing, good], model="fake-json")
    labeled, failures = label_all([conversation("a", "Sunny.")], engine, PROMPT, filt, parse_retries=1)
    assert not failures and labeled[0]["labels"]["style"] == 7.0
    first, second = engine.provider.calls
    assert first["seed"] != second["seed"]  # a new sample: a new cache key (and seed), not a cache hit
    assert len(engine.cache) == 2
    assert engine.provider.calls[0]["schema"]["properties"]["scores"]["required"] == list(filt.dimensions)

    engine = make_engine(responses=[missing, missing], model="fake-json")
    labeled, failures = label_all([conversation("b", "Rainy.")], engine, PROMPT, filt, parse_retries=1)
    assert labeled == [] and failures[0]["stage_reason"] == "parse_failed"
    assert failures[0]["error"] == "dimension 'style' missing" and failures[0]["raw"] == missing


def test_a_number_written_as_a_string_is_repaired_anything_else_is_not(filt):
    from distillery.labeling.oracle import validate_scores
    assert validate_scores({"relevance": "7", "groundedness": " 8.5 ", "style": 3}, filt)["groundedness"] == 8.5
    with pytest.raises(ParseError, match="not a number"):
        validate_scores({"relevance": "seven", "groundedness": 8, "style": 3}, filt)
    with pytest.raises(ParseError, match="outside"):
        validate_scores({"relevance": 11, "groundedness": 8, "style": 3}, filt)


def test_score_oracle_uses_token_probabilities(filt, make_engine):
    engine = make_engine(responses=[{"relevance": 2.5, "groundedness": 6.0, "style": 4.0}])
    labeled, failures = label_all([conversation("a", "Sunny.")], engine, PROMPT, filt)
    assert not failures and labeled[0]["labels"]["relevance"] == 2.5
    assert labeled[0]["score"] == 2.0  # gatekeeper: relevance < 3 caps the score
    assert engine.provider.calls[0]["kind"] == "score"


def test_journal_resumes_without_calling_the_model_again(filt, make_engine, tmp_path):
    journal = Journal(tmp_path / "journal" / "label.jsonl")
    records = [conversation(str(i), f"Answer {i}.") for i in range(5)]
    first, _ = label_all(records, make_engine(), PROMPT, filt, journal=journal)
    # A run killed mid-write leaves a torn last line; it must not break the resume.
    with journal.path.open("a") as fh:
        fh.write('{"key": "torn')
    engine = make_engine()
    engine.cache.cache.get_many = lambda keys: {}  # prove the journal, not the cache, answers
    second, _ = label_all(records, engine, PROMPT, filt, journal=journal)
    assert second == first and engine.provider.calls == []


def test_a_reply_cut_off_at_max_tokens_is_a_truncated_failure_not_retried(filt, make_engine):
    from distillery.engine.job import Failure
    from distillery.labeling.oracle import OracleJob
    from distillery.providers import Completion

    job = OracleJob(PROMPT, filt, make_engine(model="fake-json"), parse_retries=3)
    cut = Completion('{"scores": {"relevance": 7, "groundedn', 50, 64, "fake", "fake-json",
                     meta={"finish_reason": "length"})
    outcome = job.parse(conversation("a", "Sunny."), cut, attempt=0)
    assert isinstance(outcome, Failure) and outcome.reason == "truncated"
    assert "max_tokens=64" in outcome.detail and "base.oracle.max_tokens" in outcome.detail and outcome.raw
    whole = Completion('{"scores": {"relevance": 7}}', 50, 10, "fake", "fake-json", meta={"finish_reason": "stop"})
    assert job.parse(conversation("a", "Sunny."), whole, attempt=0).reason == "parse_failed"  # asked again


def test_bad_existing_labels_are_all_listed_with_file_line_and_id(filt, tmp_path):
    from distillery.labeling.oracle import keep_existing_labels
    from distillery.records import load_numbered, write_records

    good = {"relevance": 7, "groundedness": 6, "style": 5}
    rows = [conversation("ok", "Fine."), conversation("far", "Hot."), conversation("short", "Cold."),
            conversation("extra", "Mild."), conversation("fresh", "Wet.")]
    rows[0]["labels"] = good
    rows[1]["labels"] = {**good, "style": 12}
    rows[2]["labels"] = {"relevance": 7, "groundedness": 6}
    rows[3]["labels"] = {**good, "humour": 3}
    write_records(tmp_path / "in.jsonl", rows)
    with pytest.raises(ParseError) as err:
        keep_existing_labels(load_numbered(tmp_path / "in.jsonl"), filt, tmp_path / "in.jsonl")
    message = str(err.value)
    assert f"{tmp_path / 'in.jsonl'}:2: record 'far'" in message and "'style' = 12" in message
    assert ":3: record 'short'" in message and "'style' missing" in message
    assert ":4: record 'extra'" in message and "unknown dimension 'humour'" in message
    assert "'ok'" not in message
    kept, todo = keep_existing_labels(load_numbered(tmp_path / "in.jsonl"), filt, "x", relabel=True)
    assert kept == [] and len(todo) == 5
