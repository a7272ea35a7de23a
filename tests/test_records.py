import json

import pytest

from distillery.records import RecordError, load_records, student_text, subject_text, with_subject
from tests.conftest import conversation


def write(tmp_path, lines):
    path = tmp_path / "corpus.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("bad, problem", [
    ('{"id": "b", "text": "x"', "not valid JSON"),
    ('{"text": "no id here"}', "missing required field 'id'"),
    ('{"id": "a", "text": "again"}', "duplicate id 'a' (first seen on line 1)"),
    ('{"id": "c", "title": "only a title"}', "has neither 'text' nor 'messages'"),
    ('{"id": 7, "text": "x"}', "'id' must be a non-empty string"),
    ('["not", "an", "object"]', "expected a JSON object"),
    ('{"id": "d", "messages": [{"content": "no role"}]}', "messages[0] lacks 'role'"),
])
def test_bad_line_names_file_line_and_problem(tmp_path, bad, problem):
    path = write(tmp_path, ['{"id": "a", "text": "fine"}', "", bad])
    with pytest.raises(RecordError) as err:
        load_records(path)
    assert err.value.line == 3
    assert str(err.value).startswith(f"{path}:3: ")
    assert problem in str(err.value)


def test_good_records_load_in_order(tmp_path):
    path = write(tmp_path, [json.dumps({"id": "a", "text": "one"}), json.dumps(conversation("b", "two"))])
    assert [r["id"] for r in load_records(path)] == ["a", "b"]


def test_subject_text_is_final_answer_or_title_and_text():
    assert subject_text(conversation("a", "It is sunny.")) == "It is sunny."
    assert subject_text({"id": "d", "title": "T", "text": "body"}) == "T\n\nbody"


def test_student_text_shows_tool_call_and_result_before_answer():
    text = student_text(conversation("a", "It is sunny."))
    assert "get_weather" in text and '"temp_c": 20' in text and text.endswith("[answer] It is sunny.")


def test_with_subject_changes_only_the_final_answer():
    record = conversation("a", "Old answer.")
    new = with_subject(record, "New answer.")
    assert subject_text(new) == "New answer."
    assert new["messages"][:-1] == record["messages"][:-1]
    assert subject_text(record) == "Old answer."  # the input is not mutated
