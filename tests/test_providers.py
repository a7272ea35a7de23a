"""Every hosted provider through its real SDK, pointed at a loopback server in its vendor's wire format,
with faults injected: each record ends labeled or listed in failures with its reason."""
import pytest

from distillery.engine.cache import CallCache
from distillery.engine.engine import Engine
from distillery.testing.mock_api import MockAPI
from distillery.labeling.oracle import OraclePrompt, label_all
from distillery.params import ModelSpec
from distillery.providers.base import SetupError, get_provider
from tests.conftest import ROOT, conversation

PROMPT = OraclePrompt(ROOT / "prompts" / "oracle.md")
KEYS = {"ANTHROPIC_API_KEY": "sk-ant-test-SECRET1", "MISTRAL_API_KEY": "mistral-test-SECRET2",
        "TOGETHER_API_KEY": "together-test-SECRET3", "HF_TOKEN": "hf_test_SECRET4", "OPENAI_API_KEY": "sk-test-SECRET5"}
PROVIDERS = {"anthropic": "", "mistral": "", "together": "", "openai_compat": "/v1", "huggingface": ""}

# fault marker in the answer -> what must become of the record
OUTCOMES = {
    "clean": "labeled",
    "FAULT:429x2": "labeled",  # rate limited twice, Retry-After honoured, then answered
    "FAULT:500x1": "labeled",
    "FAULT:503x1": "labeled",
    "FAULT:529x1": "labeled",  # Anthropic's "overloaded"
    "FAULT:slowx1": "labeled",  # past the client timeout once
    "FAULT:missing_dimx1": "labeled",  # invalid once: asked again with a new sample
    "FAULT:truncated": "call_failed",
    "FAULT:nonjson": "call_failed",
    "FAULT:500": "call_failed",
    "FAULT:missing_dim": "parse_failed",
}


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)  # the Makefile's offline demo setting


def engine_for(provider, url, tmp_path, prices=None, budget_usd=None, **spec):
    spec = ModelSpec(provider=provider, model="test-model", base_url=url + PROVIDERS.get(provider, ""),
                     timeout_s=2.0, max_tokens=64, **spec)
    return Engine(spec, CallCache(tmp_path / "cache.sqlite"), max_retries=2, backoff_s=0.01, prices=prices,
                  budget_usd=budget_usd)


@pytest.mark.parametrize("provider", list(PROVIDERS))
def test_every_record_is_labeled_or_a_failure_with_its_reason(provider, filt, tmp_path):
    records = [conversation(marker, f"Sunny and 20°C in Paris. {marker}") for marker in OUTCOMES]
    with MockAPI(slow_s=3.0, retry_after_s=0.2) as api:
        engine = engine_for(provider, api.url, tmp_path)
        labeled, failures = label_all(records, engine, PROMPT, filt, parse_retries=1)
        api.wait_idle()
    got = {r["id"]: "labeled" for r in labeled} | {f["id"]: f["stage_reason"] for f in failures}
    assert got == OUTCOMES
    by_id = {f["id"]: f for f in failures}
    assert "unreadable reply" in by_id["FAULT:truncated"]["error"]
    assert "HTTP 500" in by_id["FAULT:500"]["error"]
    assert by_id["FAULT:missing_dim"]["error"] == "dimension 'relevance' missing"
    assert '"groundedness"' in by_id["FAULT:missing_dim"]["raw"]  # the raw reply is kept for a person to read
    assert labeled[0]["oracle"]["provider"] == provider and set(labeled[0]["labels"]) == set(filt.dimensions)
    # Counts agree: failed calls are the call_failed records; every 200 the client read is counted once
    # (not the torn or HTML ones, nor the slow one it had given up on).
    assert engine.stats.failures == 3
    unread = sum(api.faults_served[k] for k in ("truncated", "nonjson", "slow"))
    assert engine.stats.calls == api.statuses[200] - unread
    assert engine.stats.retries >= 2 + 1 + 1 + 1 + 1 + 2 * 3  # the transient faults, and 3 records out of retries


def test_retry_after_pauses_the_provider_and_the_limiter_keeps_under_the_rate(filt, tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(30)]
    records[0] = conversation("limited", "Answer FAULT:429x1.")
    with MockAPI(rps=10, retry_after_s=0.5) as api:
        engine = engine_for("openai_compat", api.url, tmp_path, rpm=600, concurrency=8)
        labeled, failures = label_all(records, engine, PROMPT, filt)
    assert len(labeled) == 30 and not failures
    assert api.statuses[429] == 1  # only the injected one: the limiter never tripped the server's bucket
    # The retried request waited out Retry-After.
    gaps = [b - a for a, b in zip(api.accepted_at, api.accepted_at[1:])]
    assert max(gaps) >= 0.45


def test_hosted_calls_run_concurrently(filt, tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(16)]
    with MockAPI(latency_s=0.2) as api:
        engine = engine_for("anthropic", api.url, tmp_path, concurrency=8)
        labeled, _ = label_all(records, engine, PROMPT, filt)
    assert len(labeled) == 16 and 1 < api.max_in_flight <= 8  # concurrent, and never past the setting


def test_fallback_takes_over_when_the_first_provider_keeps_failing(filt, tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(6)]
    with MockAPI() as good, MockAPI() as bad:
        bad_spec = {"provider": "openai_compat", "model": "down", "base_url": bad.url + "/nothing-here"}
        engine = engine_for("anthropic", good.url, tmp_path)
        # The primary is a server that answers 404 to everything; the chain's second member is healthy.
        engine = Engine(ModelSpec(**bad_spec, timeout_s=0.5, concurrency=1, chain=[engine.spec]),
                        CallCache(tmp_path / "cache2.sqlite"), max_retries=1, backoff_s=0.01)
        labeled, failures = label_all(records, engine, PROMPT, filt)
    assert len(labeled) == 6 and not failures
    assert {r["oracle"]["provider"] for r in labeled} == {"anthropic"}
    # A 404 (an unknown model) is not retried, and that member is out for the run after its first one.
    assert bad.statuses[404] == 1 and engine.stats.fallbacks == 1 and engine.stats.failures == 0


def test_round_robin_spreads_calls_and_a_rerun_pays_nothing(filt, tmp_path):
    records = [conversation(str(i), f"Answer {i}.") for i in range(10)]
    with MockAPI() as a, MockAPI() as b:
        second = ModelSpec(provider="openai_compat", model="m2", base_url=b.url + "/v1")
        engine = engine_for("openai_compat", a.url, tmp_path, routing="round_robin", chain=[second])
        first, _ = label_all(records, engine, PROMPT, filt)
        assert a.requests + b.requests == 10 and a.requests >= 2 and b.requests >= 2  # spread, by capacity
        assert set(engine.stats.by_provider) == {"openai_compat/test-model", "openai_compat/m2"}
        engine = engine_for("openai_compat", a.url, tmp_path, routing="round_robin", chain=[second])
        again, _ = label_all(records, engine, PROMPT, filt)
    assert again == first and a.requests + b.requests == 10  # each answer is found under whoever gave it
    assert engine.stats.cache_hits == 10


def test_a_budget_stops_cleanly_and_a_rerun_resumes_without_paying_twice(filt, tmp_path):
    from distillery.engine.journal import Journal
    from distillery.engine.job import BudgetStop
    from distillery.params import Price

    records = [conversation(str(i), f"Answer number {i}.") for i in range(20)]
    journal = Journal(tmp_path / "label.jsonl")
    prices = {"test-model": Price(input=1000.0, output=1000.0)}  # dear, so a small budget bites
    with MockAPI() as api:
        engine = engine_for("openai_compat", api.url, tmp_path, concurrency=1, prices=prices, budget_usd=2.0)
        with pytest.raises(BudgetStop, match="budget of \\$2 reached"):
            label_all(records, engine, PROMPT, filt, journal=journal)
        paid = api.requests
        assert 0 < paid < 20 and len(journal.load()) == paid
        assert engine.stats.cost_usd <= 2.0
        engine = engine_for("openai_compat", api.url, tmp_path, concurrency=1)
        labeled, failures = label_all(records, engine, PROMPT, filt, journal=journal)
    assert len(labeled) == 20 and not failures
    assert api.requests == 20  # the first run's calls were not paid again
    assert engine.stats.journal_hits == paid


def test_missing_key_and_missing_base_url_say_what_to_set(monkeypatch, tmp_path):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    monkeypatch.chdir(tmp_path)  # no .env here
    provider = get_provider("anthropic", "claude")  # a dry run builds providers without a key…
    assert "ANTHROPIC_API_KEY" in provider.setup_problem()
    with pytest.raises(SetupError, match="set ANTHROPIC_API_KEY in the environment or in .env"):
        provider.complete([{"role": "user", "content": "hi"}], max_tokens=5)  # …the first call needs it
    with pytest.raises(SetupError, match="needs base_url"):
        get_provider("openai_compat", "qwen")
    (tmp_path / ".env").write_text("ANTHROPIC_API_KEY=sk-from-dotenv\n")
    assert get_provider("anthropic", "claude").client.api_key == "sk-from-dotenv"


def test_temperature_zero_and_the_schema_reach_the_wire(tmp_path):
    import json

    with MockAPI() as api:
        provider = get_provider("openai_compat", "m", api.url + "/v1")
        provider.complete([{"role": "user", "content": "hi"}], temperature=0.0, max_tokens=5,
                          schema={"type": "object"})
        anthropic = get_provider("anthropic", "claude", api.url)
        anthropic.complete([{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}],
                           max_tokens=5, schema={"type": "object"})
    sent, sent_anthropic = (json.loads(b) for b in api.bodies)
    assert sent["temperature"] == 0.0 and sent["response_format"]["json_schema"]["schema"] == {"type": "object"}
    assert sent_anthropic["system"] == "be brief"
    assert sent_anthropic["tool_choice"] == {"type": "tool", "name": sent_anthropic["tools"][0]["name"]}


def test_a_server_that_rejects_json_schema_gets_json_object_once_and_the_metrics_say_so(filt, tmp_path):
    """llama.cpp's server answers 500 "Input should be 'text' or 'json_object'" to a json_schema response
    format and takes {"type": "json_object", "schema": …}."""
    import json

    records = [conversation(str(i), f"Answer {i}.") for i in range(6)]
    with MockAPI(json_object_only=True) as api:
        engine = engine_for("openai_compat", api.url, tmp_path, concurrency=1)
        labeled, failures = label_all(records, engine, PROMPT, filt)
        formats = [json.loads(b).get("response_format", {}).get("type") for b in api.bodies]
    assert len(labeled) == 6 and not failures
    assert formats == ["json_schema"] + ["json_object"] * 6  # one rejection, then the other form
    assert any("switched to json_object" in n for n in engine.stats.as_metrics()["notices"])
    assert engine.stats.retries == 0  # a format switch is not a retry of a transient error


def test_json_mode_can_be_chosen_in_params(filt, tmp_path):
    import json

    with MockAPI(json_object_only=True) as api:
        engine = engine_for("openai_compat", api.url, tmp_path, json_mode="json_object")
        label_all([conversation("a", "Sunny.")], engine, PROMPT, filt)
        assert [json.loads(b)["response_format"]["type"] for b in api.bodies] == ["json_object"]


def test_calls_in_flight_when_the_json_mode_switches_are_sent_again_not_failed(filt, tmp_path):
    """Several calls go out with json_schema at once; each comes back rejected. The first switches the
    mode (one notice); the others resend as json_object instead of failing or costing a retry."""
    records = [conversation(str(i), f"Answer {i}.") for i in range(12)]
    with MockAPI(json_object_only=True, latency_s=0.2) as api:
        engine = engine_for("openai_compat", api.url, tmp_path, concurrency=4)
        labeled, failures = label_all(records, engine, PROMPT, filt)
    assert len(labeled) == 12 and not failures and engine.stats.retries == 0
    assert sum("switched to json_object" in n for n in engine.stats.as_metrics()["notices"]) == 1
