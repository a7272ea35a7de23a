import json
import os
import re
import subprocess
import sys

from distillery.params import RegenerateParams
from distillery.records import load_records, subject_text, write_records
from distillery.regeneration.facts import check_facts, extract_numbers, fact_sources, temperature_scale
from distillery.regeneration.rewrite import RegeneratePrompt, regenerate_all
from distillery.testing.demo_corpus import STOCK as DEMO_STOCK
from tests.conftest import ROOT, conversation, params_file

WEATHER = json.dumps({"city": "Lisbon", "day": "on Monday", "condition": "light rain", "temp_c": 22,
                      "precip_pct": 40, "wind_kph": 15})
USER = "What's the weather in Lisbon on Monday?"
CONTEXT = [USER, WEATHER]
ORIGINAL = "Light rain in Lisbon on Monday, about 22 degrees, rain chance 40%."


def test_degrees_are_read_in_the_scale_the_tool_result_uses():
    assert check_facts("It will be 22°C.", "A mild 22 degrees.", CONTEXT).ok
    assert check_facts("It will be 22 degrees.", "Expect 22 celsius.", CONTEXT).ok
    assert not check_facts("It will be 22 degrees.", "It will be 22°F.", CONTEXT).ok  # degrees here are Celsius
    assert temperature_scale(CONTEXT) == "°C" and temperature_scale(['{"temp_f": 72}']) == "°F"
    assert check_facts("It will be 72°F.", "A mild 72 degrees.", ['{"temp_f": 72}']).ok
    swapped = check_facts("It will be 22°C.", "It will be 22°F.", CONTEXT)  # the same number, another unit
    assert (swapped.reason, swapped.detail) == ("facts_dropped", "drops 22°C")


def test_a_changed_temperature_is_refused_and_named():
    check = check_facts(ORIGINAL, "Light rain in Lisbon on Monday, about 25°C, rain chance 40%.", CONTEXT)
    assert not check.ok and check.reason == "facts_dropped"
    assert check.changed == [("22°C", "25°C")] and check.detail == "changes 22°C to 25°C"
    assert check.invented == []  # named once, as the change


def test_a_dropped_city_is_refused_and_named():
    check = check_facts(ORIGINAL, "Rain on Monday, 22°C, a 40% chance of it.", CONTEXT)
    assert (check.reason, check.dropped) == ("facts_dropped", ["Lisbon"])


def test_a_number_found_nowhere_is_an_invention_one_from_the_tool_result_is_not():
    invented = check_facts(ORIGINAL, "Lisbon, Monday: light rain, 22°C, 40% chance, and 3 mm by noon.", CONTEXT)
    assert (invented.reason, invented.invented, invented.kept) == ("invention", ["3 mm"], True)
    told = check_facts(ORIGINAL, "Lisbon on Monday: light rain, 22°C, a 40% chance, wind 15 km/h.", CONTEXT)
    assert told.ok  # 15 is in the tool result though the original never said it
    # A spelled number ("one"), a rating scale ("out of 5"), a count of the tool's list: none is an invention.
    hotels = json.dumps({"hotels": [{"name": "Casa Verde", "rating": 4.5}, {"name": "Harbor Inn", "rating": 3.9}]})
    assert check_facts("Casa Verde has the best rating (4.5).",
                       "Casa Verde is the one: 4.5 out of 5, best of the 2 I found.", [hotels]).ok


def test_prices_and_times_are_normalised():
    flights = json.dumps({"flights": [{"airline": "Meridian", "depart": "07:45", "price_usd": 120}]})
    original = "Meridian leaves at 07:45 for $120."
    for rewrite in ("Meridian, 7:45 am, 120 USD.", "Meridian leaves at 7:45 AM; it costs 120 dollars.",
                    "For US$120 Meridian has you airborne by 07:45."):
        assert check_facts(original, rewrite, [flights]).ok, rewrite
    late = check_facts(original, "Meridian leaves at 7:45 pm for $120.", [flights])
    assert late.changed == [("07:45", "19:45")]
    assert [str(n) for n in extract_numbers("$1,200, 40 percent, 36 kph, minus five, 5 below zero", "°C")] == \
        ["$1200", "40%", "36 km/h", "-5", "-5°C"]


def test_a_stock_phrase_with_no_facts_accepts_any_fact_free_rewrite():
    for stock in ("I hope this helps! Let me know if you need anything else.",
                  "Climate is what we expect, weather is what we get."):
        check = check_facts(stock, "Glad to be of use; enjoy the trip.", CONTEXT)
        assert check.required == [] and check.ok


def test_facts_kept_in_another_order_pass():
    assert check_facts(ORIGINAL, "A 40% chance of light rain and some 22°C: Lisbon's Monday in brief.", CONTEXT).ok


def test_an_original_wrong_about_the_tool_result_may_be_corrected_not_changed():
    check = check_facts("Lisbon: 25°C on Monday.", "Lisbon: 22°C on Monday.", CONTEXT)  # the tool says 22
    assert check.ok and check.corrected == [("25°C", "22°C")]


def test_every_demo_answer_passes_against_itself_and_dropping_its_stock_phrase_keeps_every_fact():
    stock = re.compile(r"\s*(?:" + "|".join(re.escape(p).replace(re.escape("{city}"), r"[^.]+")
                                            for p in DEMO_STOCK.values()) + r")\s*")
    records = load_records(ROOT / "data" / "raw" / "corpus.jsonl")
    templated = [r for r in records if r["tags"].get("kind") == "templated"]
    assert len(templated) > 100
    for r in records:
        original, context = fact_sources(r)
        assert check_facts(original, original, context).ok, r["id"]
    for r in templated:
        original, context = fact_sources(r)
        check = check_facts(original, stock.sub(" ", original).strip(), context)
        assert check.ok and len(check.required) >= 2, (r["id"], check)
    # …and the check is not vacuous: another record's answer in its place is refused.
    for a, b in zip(templated, templated[1:]):
        original, context = fact_sources(a)
        assert not check_facts(original, stock.sub(" ", subject_text(b)).strip(), context).ok, (a["id"], b["id"])


PROMPT = RegeneratePrompt(ROOT / "prompts" / "regenerate.md")
HOPE = "I hope this helps! Let me know if you need anything else."
PATTERNS = [{"id": "phrase-0", "kind": "known_phrase", "text": HOPE}]
STYLE = {"neutral": ["Plain and short."]}


def test_a_rewrite_that_drops_facts_is_retried_then_the_original_kept_with_the_reason(make_engine):
    record = conversation("a", f"Sunny in Paris, 20°C. {HOPE}")
    engine = make_engine(responses=["Sunny skies over the city today.", "Sunny in Paris and 31°C, lovely."])
    out = regenerate_all([record], {"a": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT,
                         RegenerateParams(max_attempts=2), seed=1)
    assert len(engine.provider.calls) == 2 and subject_text(out[0]) == subject_text(record)
    regenerated = out[0]["regenerated"]
    assert regenerated["rejected"] == [{"reason": "facts_dropped", "detail": "drops 20°C, Paris"},
                                       {"reason": "facts_dropped", "detail": "changes 20°C to 31°C"}]
    assert regenerated["kept_original"] == {"reason": "facts_dropped", "detail": "changes 20°C to 31°C"}
    assert regenerated["facts"] == {"checked": 2, "kept": 0, "inventions": 0}
    assert "Keep every fact" in engine.provider.calls[0]["messages"][0]["content"]


def test_with_check_facts_off_the_rewrite_is_taken_and_still_counted(make_engine):
    record = conversation("a", f"Sunny in Paris, 20°C. {HOPE}")
    engine = make_engine(responses=["Sunny skies and 99 reasons to smile."])
    out = regenerate_all([record], {"a": ["phrase-0"]}, PATTERNS, STYLE, engine, PROMPT,
                         RegenerateParams(max_attempts=2, check_facts=False), seed=1)
    assert subject_text(out[0]) == "Sunny skies and 99 reasons to smile."
    assert out[0]["regenerated"]["facts"] == {"checked": 1, "kept": 0, "inventions": 1}


def test_the_stage_reports_facts_kept_inventions_and_originals_kept_by_reason(tmp_path):
    # The fake generator's rewrite ("Fake answer 123456: sunny mild …") drops the facts and invents a number.
    params_file(tmp_path / "params.yaml", {"base": {"generator": {"provider": "fake", "model": "fake"},
                                                    "state_dir": str(tmp_path / "state")},
                                           "diversity": {"vendi_sample": 0}, "regenerate": {"max_attempts": 2}})
    records = [conversation(f"r{i}", f"Sunny in Paris, 20°C. {HOPE}") for i in range(3)]
    write_records(tmp_path / "corpus.jsonl", records)
    write_records(tmp_path / "flagged.jsonl", [{"id": r["id"], "patterns": ["phrase-0"]} for r in records])
    (tmp_path / "patterns.json").write_text(json.dumps([{**PATTERNS[0], "count": 3}]))
    write_records(tmp_path / "style.jsonl", [{"persona": "neutral", "text": "Plain and short."}])
    paths = {n: tmp_path / f for n, f in (("corpus", "corpus.jsonl"), ("flagged", "flagged.jsonl"),
                                          ("patterns", "patterns.json"), ("style", "style.jsonl"),
                                          ("out", "out.jsonl"), ("metrics", "headline.json"),
                                          ("details", "details.json"), ("report", "report.md"))}
    cmd = [sys.executable, str(ROOT / "stages" / "regenerate.py"), "--params", str(tmp_path / "params.yaml"),
           "--prompt", str(ROOT / "prompts" / "regenerate.md"),
           *[arg for name, path in paths.items() for arg in (f"--{name}", str(path))]]
    subprocess.run(cmd, env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, check=True, capture_output=True)
    headline = json.loads((tmp_path / "headline.json").read_text())
    assert headline["facts_kept_rate"] == 0.0 and headline["inventions"] == 6
    assert headline["kept_original_reasons"] == {"facts_dropped": 3} and headline["rewritten"] == 0
    assert json.loads((tmp_path / "details.json").read_text())["facts_checked"] == 6
    report = (tmp_path / "report.md").read_text()
    assert "Facts: 0% of the 6 rewrites" in report and "facts_dropped: drops 20°C, Paris" in report
