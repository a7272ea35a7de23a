import json
import random

import pytest

from distillery.plots import svg
from distillery.records import RecordError
from distillery.text.overrep import overrep_section, overrep_spec, overrepresented, read_reference


def human_words(rng: random.Random, k: int) -> list[str]:
    """k words drawn with English's own word frequencies (wordfreq's tables): text with no stock phrases."""
    import wordfreq

    vocab = [w for w in wordfreq.top_n_list("en", 5000) if w.isalpha()]
    return rng.choices(vocab, [wordfreq.word_frequency(w, "en") for w in vocab], k=k)


def answer(words: list[str]) -> str:
    return " ".join(" ".join(words[i:i + 10]).capitalize() + "." for i in range(0, len(words), 10))


def corpus(n=300, seed=0, delve=0.25, tapestry=0.25, hope=0.3, rich=0.1):
    """Answers of human-frequency words; 'delve' and 'tapestry' replace a word in some, 'I hope this helps!'
    ends some (and 'Let me know if you have any other questions.' a fifth, unless hope=0); 'rich tapestry'
    in a `rich` share (a third of the tapestry answers)."""
    rng = random.Random(seed)
    pool = human_words(rng, n * 40)
    texts = []
    for i in range(n):
        words = pool[i * 40:(i + 1) * 40]
        if i < n * delve:
            words[rng.randrange(1, 40)] = "delve"
        if i % 4 == 1 and i < n * tapestry * 4:
            at = rng.randrange(2, 40)
            words[at] = "tapestry"
            if i % 12 == 1 and i < n * rich * 12:
                words[at - 1] = "rich"
        text = answer(words) + (" I hope this helps!" if i % 10 < hope * 10 else "")
        texts.append(text + (" Let me know if you have any other questions." if i % 5 == 2 and hope else ""))
    return texts


@pytest.fixture(scope="module")
def rows():
    return overrepresented(corpus())


def test_injected_stock_words_and_phrase_top_the_list_and_common_words_do_not(rows):
    top = [r["ngram"] for r in rows]
    assert set(top[:4]) == {"delve", "tapestry", "rich tapestry", "i hope this helps"}
    assert "the" not in top and "of" not in top  # used as often as people use them
    delve = next(r for r in rows if r["ngram"] == "delve")
    assert delve["answers"] == 75 and delve["share"] == 0.25 and delve["baseline_per_million"] > 0


def test_the_longest_phrase_is_listed_once_without_its_pieces(rows):
    listed = {r["ngram"] for r in rows}
    assert "i hope this helps" in listed
    assert not listed & {"hope this helps", "i hope this", "hope this", "this helps", "i hope", "hope", "helps"}
    # A stock sentence longer than max_span, of common words, is one row too.
    assert "let me know if you have any other questions" in listed
    assert not [g for g in listed if " " in g and g != "let me know if you have any other questions"
                and f" {g} " in " let me know if you have any other questions "]
    # A piece that also lives apart (tapestry: 75 answers, 'rich tapestry' about a third of them) stays.
    assert {"tapestry", "rich tapestry"} <= listed


def test_a_phrase_against_wordfreq_has_a_bound_not_a_measured_baseline(rows):
    phrase = next(r for r in rows if r["ngram"] == "i hope this helps")
    assert phrase["baseline_is_bound"] and phrase["words"] == 4
    assert phrase["baseline_per_million"] == pytest.approx(55.0)  # 'helps', its rarest word
    assert not next(r for r in rows if r["ngram"] == "delve")["baseline_is_bound"]


def test_min_docs_keeps_one_long_answer_off_the_list():
    texts = corpus(n=120, delve=0, tapestry=0, hope=0, rich=0)
    texts[0] += " zephyr" * 200
    for i in range(1, 11):
        texts[i] += " Quixotic!"
    assert "zephyr" not in {r["ngram"] for r in overrepresented(texts, min_docs=2)}
    assert "quixotic" in {r["ngram"] for r in overrepresented(texts, min_docs=10)}
    assert "quixotic" not in {r["ngram"] for r in overrepresented(texts, min_docs=11)}


def test_ngrams_copied_from_the_context_numbers_and_names_are_not_counted():
    texts = corpus(n=200, hope=0, rich=0)
    texts = [t + f" Reykjavik is at {i % 7 + 40} degrees near Meridian Hall." for i, t in enumerate(texts)]
    contexts = ['[tool result] {"city": "Reykjavik", "note": "a tapestry"}' if "tapestry" in t else
                '[tool result] {"city": "Reykjavik"}' for t in texts]
    without = {r["ngram"] for r in overrepresented(texts)}
    assert "tapestry" in without and "reykjavik is at" in without  # both count when no context is given
    listed = {r["ngram"] for r in overrepresented(texts, contexts)}
    assert "delve" in listed and not any("tapestry" in g or "reykjavik" in g for g in listed)
    assert not any(any(c.isdigit() for c in g) or "meridian" in g for g in without | listed)


def test_a_reference_corpus_the_user_names_is_the_baseline(tmp_path):
    rng = random.Random(1)
    lines = []
    for i in range(1500):
        words = human_words(rng, 40)
        if i % 3 == 0:
            words[5] = "delve"  # people in this reference delve a lot; nobody writes 'tapestry'
        lines.append(answer(words))
    (tmp_path / "human.txt").write_text("\n".join(lines) + "\n")
    (tmp_path / "human.jsonl").write_text("".join(json.dumps({"text": t}) + "\n" for t in lines))
    assert read_reference(tmp_path / "human.txt") == read_reference(tmp_path / "human.jsonl") == lines

    listed = {r["ngram"]: r for r in overrepresented(corpus(), reference=read_reference(tmp_path / "human.txt"))}
    assert "delve" not in listed
    assert listed["tapestry"]["baseline_per_million"] == 0 and listed["tapestry"]["log2_ratio"] > 5
    assert not listed["i hope this helps"]["baseline_is_bound"]  # counted in the reference, not bounded

    (tmp_path / "bad.jsonl").write_text('{"text": "fine"}\n{"body": "no text"}\n')
    with pytest.raises(RecordError, match="bad.jsonl:2"):
        read_reference(tmp_path / "bad.jsonl")


def test_the_figure_is_a_static_bar_chart_that_renders_offline(rows):
    spec = overrep_spec(rows, top=10)
    assert "params" not in json.dumps(spec)
    assert [v["ngram"] for v in spec["data"]["values"]] == [r["ngram"] for r in rows[:10]]
    drawn = svg(spec)
    assert drawn.startswith("<svg") and "i hope this helps" in drawn and "delve" in drawn
    # n-grams that are words of Vega's expression language, or hold quotes, are data, never code
    odd = [{**rows[0], "ngram": g} for g in ("if", "i'd say", 'the "best"', "datum.x")]
    drawn = svg(overrep_spec(odd))
    assert all(f">{g}<" in drawn for g in ("if", "i'd say", 'the "best"', "datum.x"))


def test_the_report_section_says_it_flags_nothing_and_tables_the_top(rows):
    lines = overrep_section(rows, "wordfreq, English", top=5, figure="figures/overrep.svg")
    text = "\n".join(lines)
    assert "nothing on it is flagged" in text and "wordfreq, English" in text
    assert "![Over-represented words and phrases](figures/overrep.svg)" in text
    table = [line for line in lines if line.startswith("| `")]
    assert len(table) == 5 and any(line.startswith("| `delve` | 75 | 25.0% |") for line in table)
    phrase = next(line for line in table if "`i hope this helps`" in line)
    assert "≤ 55.00" in phrase and "≥ " in phrase
    assert "No word or phrase" in "\n".join(overrep_section([], "wordfreq, English"))


def test_the_stage_lists_stock_phrases_and_flags_them_only_when_asked(tmp_path):
    """detect_templates end to end: the report lists an over-represented phrase that recurs too little to
    be mined, draws it, and flags nothing for it until detect_templates.overrep_flag says so."""
    import os
    import subprocess
    import sys

    from distillery.records import write_records
    from tests.conftest import ROOT, conversation, params_file

    rng = random.Random(3)
    texts = [answer(human_words(rng, 30)) for _ in range(80)]
    stock = {i for i in range(0, 80, 4)}  # 20 answers: below min_count, so no mined pattern catches it
    records = [conversation(f"r{i}", t + (" It is a rich tapestry of weather, truly." if i in stock else ""))
               for i, t in enumerate(texts)]
    write_records(tmp_path / "corpus.jsonl", records)
    flagged = {}
    for flag in (False, True):
        params_file(tmp_path / "params.yaml", {"detect_templates": {
            "min_count": 50, "max_templates": 1, "overrep_min_docs": 5, "overrep_flag": flag}})
        out = tmp_path / str(flag)
        subprocess.run([sys.executable, str(ROOT / "stages" / "detect_templates.py"), "--params",
                        str(tmp_path / "params.yaml"), "--corpus", str(tmp_path / "corpus.jsonl"),
                        "--patterns", str(out / "patterns.json"), "--flagged", str(out / "flagged.jsonl"),
                        "--metrics", str(out / "m.json"), "--details", str(out / "d.json"),
                        "--report", str(out / "report.md"), "--figure", str(out / "figures/overrep.svg")],
                       check=True, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, capture_output=True)
        listed = [r["ngram"] for r in json.loads((out / "d.json").read_text())["overrepresented"]]
        assert any("tapestry" in g for g in listed[:3])
        report = (out / "report.md").read_text()
        assert "## Over-represented words and phrases" in report and "](figures/overrep.svg)" in report
        assert (out / "figures/overrep.svg").read_text().startswith("<svg")
        flagged[flag] = {json.loads(line)["id"] for line in (out / "flagged.jsonl").read_text().splitlines()}
    assert not flagged[False] & {f"r{i}" for i in stock}  # it informs…
    assert flagged[True] == {f"r{i}" for i in sorted(stock)[1:]}  # …and flags when asked (the first one kept)
