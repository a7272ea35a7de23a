import pytest

from distillery.llm import CallFailed
from distillery.providers import ProviderError

MSG = [{"role": "user", "content": "hello"}]


def test_second_identical_call_is_a_cache_hit(make_engine):
    engine = make_engine(responses=["first"])
    assert engine.complete(MSG).text == "first"
    assert engine.complete(MSG).text == "first"
    assert len(engine.provider.calls) == 1
    assert (engine.stats.calls, engine.stats.cache_hits) == (1, 1)


def test_cache_survives_a_new_engine(make_engine):
    make_engine(responses=["paid once"]).complete(MSG)
    engine = make_engine(responses=["paid twice"])
    assert engine.complete(MSG).text == "paid once" and engine.provider.calls == []


def test_sample_index_and_temperature_are_part_of_the_key(make_engine):
    engine = make_engine(responses=["a", "b", "c"])
    texts = [engine.complete(MSG, samples=[0]).text, engine.complete(MSG, samples=[1]).text,
             engine.complete(MSG, temperature=0.9).text]
    assert texts == ["a", "b", "c"]


def test_temperature_zero_is_sent(make_engine):
    engine = make_engine(responses=["x"], temperature=0.0)
    engine.complete(MSG)
    assert engine.provider.calls[0]["temperature"] == 0.0


def test_transient_errors_are_retried(make_engine):
    engine = make_engine(responses=[ProviderError("overloaded"), ProviderError("503"), "ok"])
    assert engine.complete(MSG).text == "ok"
    assert engine.stats.retries == 2 and engine.stats.failures == 0


def test_exhausted_retries_raise_and_are_counted(make_engine):
    engine = make_engine(responses=[ProviderError("down")] * 3, max_retries=2)
    with pytest.raises(CallFailed, match="down"):
        engine.complete(MSG)
    assert engine.stats.failures == 1 and engine.stats.calls == 0


def test_one_failing_prompt_in_a_batch_does_not_sink_the_others(make_engine, monkeypatch):
    engine = make_engine()
    monkeypatch.setattr(engine.provider, "fail_marker", "poison")
    batch = [MSG, [{"role": "user", "content": "poison"}], [{"role": "user", "content": "fine"}]]
    results = engine.complete_many(batch)
    assert isinstance(results[1], CallFailed)
    assert all(not isinstance(r, CallFailed) for r in (results[0], results[2]))


def test_a_failed_batch_counts_each_failed_prompt_once(make_engine, monkeypatch):
    engine = make_engine(max_retries=1)
    monkeypatch.setattr(engine.provider, "fail_marker", "poison")
    engine.complete_many([[{"role": "user", "content": "poison a"}], [{"role": "user", "content": "poison b"}]])
    assert engine.stats.failures == 2
