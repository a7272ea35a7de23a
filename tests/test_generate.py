"""generate: the tool runtime on the demo's SQLite world, briefs several to a call, tool-using
conversations over the engine, the gate, and the journal (a rerun pays nothing)."""
import json
import random
from collections import Counter

import pytest

from distillery.engine.cache import CallCache
from distillery.engine.engine import Engine
from distillery.engine.journal import Journal
from distillery.generation.conversation import Gate, Prompt, generate_conversations, parse_briefs, write_briefs
from distillery.generation.tools import Database, execute, load_tools, replay
from distillery.params import DiversityParams, GenerateParams, ModelSpec
from distillery.providers.base import Completion, Provider
from tests.conftest import ROOT

TOOLS = ROOT / "data/raw/tools.json"
WORLD = ROOT / "data/raw/world.sql"


@pytest.fixture(scope="module")
def tools():
    return load_tools(TOOLS)


@pytest.fixture(scope="module")
def world():
    return Database(WORLD)


def test_tools_run_sql_on_a_fresh_copy_per_conversation(tools, world):
    one, two = world.fresh(), world.fresh()
    rows = json.loads(execute(tools, one, "get_weather", '{"city": "Oslo", "day": "today"}')[0])["rows"]
    assert len(rows) == 1 and rows[0]["city"] == "Oslo"
    assert json.loads(execute(tools, one, "save_note", '{"text": "pack wool socks"}')[0])["ok"]
    assert json.loads(execute(tools, one, "read_notes", "{}")[0])["rows"] == [{"id": 1, "entry": "pack wool socks"}]
    assert json.loads(execute(tools, two, "read_notes", "{}")[0])["rows"] == []  # the other conversation's copy


@pytest.mark.parametrize("name, arguments, kind", [
    ("get_weather", '{"city": "Oslo"', "bad_arguments"),  # not JSON
    ("get_weather", '{"city": "Oslo"}', "bad_arguments"),  # a required argument missing
    ("get_weather", '{"city": "Atlantis", "day": "today"}', "bad_arguments"),  # not in the enum
    ("find_hotels", '{"city": "Oslo", "max_price_usd": "cheap"}', "bad_arguments"),  # wrong type
    ("book_flight", "{}", "unknown_tool"),
])
def test_what_goes_wrong_is_a_tool_error_the_model_can_read(tools, world, name, arguments, kind):
    content, error = execute(tools, world.fresh(), name, arguments)
    assert error == kind and "error" in json.loads(content)


def test_a_failing_statement_is_a_tool_error(tmp_path, world):
    broken = json.loads(TOOLS.read_text())
    broken[0]["sql"] = "SELECT * FROM no_such_table WHERE city = :city AND day = :day"
    (tmp_path / "tools.json").write_text(json.dumps(broken))
    content, error = execute(load_tools(tmp_path / "tools.json"), world.fresh(), "get_weather",
                             '{"city": "Oslo", "day": "today"}')
    assert error == "query_failed" and "no_such_table" in content


def test_briefs_keep_the_valid_items_of_a_partial_reply():
    reply = json.dumps([{"id": "scn-1", "situation": "s", "opening": "Rain in Oslo?"},
                        {"id": "scn-2", "situation": "s"},  # no opening
                        {"id": "scn-9", "situation": "s", "opening": "o"}])  # not asked
    briefs, problems = parse_briefs("Here you go: " + reply, {"scn-1", "scn-2", "scn-3"})
    assert list(briefs) == ["scn-1"] and len(problems) == 2
    assert parse_briefs("not json", {"scn-1"}) == ({}, ["the reply is not a JSON array"])


WORDS = ("amber bright cold damp early fresh gusty hazy icy jolly keen light misty north open pale quiet "
         "rainy still tidal umber vivid warm yellow zesty").split()


class Scripted(Provider):
    """A tool-using model in a few lines: briefs for every scenario asked (one missing on the first
    call), a tool call to get_weather, then an answer quoting the tool result."""
    name = "scripted"

    def __init__(self):
        super().__init__("scripted")
        self.calls = Counter()

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None):
        self.calls["complete"] += 1
        text = messages[-1]["content"]
        ids = [json.loads(line)["id"] for line in text.splitlines() if line.startswith('{"id"')]
        if self.calls["complete"] == 1:
            ids = ids[1:]  # a partial reply: the first scenario is re-queued
        items = [{"id": i, "situation": f"planning {i}", "opening": f"What is the weather in Oslo today? ({i})"}
                 for i in ids]
        return Completion(json.dumps(items), 100, 50, self.name, self.model)

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None, tool_choice="auto"):
        self.calls["tool_turn"] += 1
        self.calls[f"tool_choice_{tool_choice}"] += 1
        if messages[-1]["role"] == "tool":  # words of its own each time, so the gate sees no near-duplicates
            rng = random.Random(messages[1]["content"])
            words = " ".join(rng.sample(WORDS, 8))
            condition = json.loads(messages[-1]["content"])["rows"][0]["condition"]
            return Completion(f"{words}: {condition}.", 80, 20, self.name, self.model, meta={"finish_reason": "stop"})
        call = {"id": "call_0", "type": "function",
                "function": {"name": "get_weather", "arguments": json.dumps({"city": "Oslo", "day": "today"})}}
        return Completion("", 80, 10, self.name, self.model, meta={"finish_reason": "tool_calls"}, tool_calls=[call])


def _run(tmp_path, provider, rows, journal):
    cfg = GenerateParams(axes={"topic": ["weather"]}, per_call=2, max_attempts=2)
    engine = Engine(ModelSpec(provider="fake", model="scripted"), CallCache(tmp_path / "cache.sqlite"),
                    provider=provider, backoff_s=0)
    tools, world = load_tools(TOOLS), Database(WORLD)
    prompts = {name: Prompt(ROOT / "prompts" / f"generate_{name}.md") for name in ("brief", "opening", "document", "assistant", "user")}
    briefs, brief_failures, counts = write_briefs(rows, engine, prompts, tools, cfg,
                                                  lambda r: f"brief:{r['id']}", journal)
    records, failures, more = generate_conversations(
        rows, briefs, lambda r: f"conversation:{r['id']}", engine, engine, tools, world, prompts, cfg,
        Gate([], DiversityParams()), journal)
    return records, brief_failures + failures, counts + more


def test_conversations_call_tools_really_run_and_a_rerun_pays_nothing(tmp_path):
    rows = [{"id": f"scn-{i}", "topic": "weather", "persona": "twain"} for i in range(1, 4)]
    provider = Scripted()
    records, failures, counts = _run(tmp_path, provider, rows, Journal(tmp_path / "journal.jsonl"))
    assert [r["id"] for r in records] == ["gen-scn-1", "gen-scn-2", "gen-scn-3"] and not failures
    assert counts["brief_calls"] == 3  # 2 groups, then the re-queued scenario alone
    roles = [m["role"] for m in records[0]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant"]
    tool_message = records[0]["messages"][3]
    assert json.loads(tool_message["content"])["rows"][0]["city"] == "Oslo"  # from the database, not invented
    for record in records:  # every result is what the call returns on a fresh copy of the database
        assert replay(record["messages"], load_tools(TOOLS), Database(WORLD)) == []
    assert records[0]["tools"] and records[0]["tags"]["source"] == "generate"
    # The first reply of each conversation was asked to call a tool; the answer after the result was not.
    assert provider.calls["tool_choice_required"] == 3 and provider.calls["tool_choice_auto"] == 3
    before = sum(provider.calls.values())
    again, _, counts = _run(tmp_path, provider, rows, Journal(tmp_path / "journal.jsonl"))
    assert again == records and sum(provider.calls.values()) == before and counts["journal_hits"] == 6


def test_the_gate_rejects_duplicates_and_templated_answers():
    gate = Gate([{"id": "phrase-0", "kind": "known_phrase", "text": "I hope this helps!"}], DiversityParams())
    first = {"id": "a", "messages": [{"role": "assistant", "content": "Oslo is 4°C and snowing: bring boots."}]}
    gate.accept(first)
    assert gate.check({**first, "id": "b"})[0] == "duplicate"
    near = {"id": "c", "messages": [{"role": "assistant", "content": "Oslo is 4°C and snowing: bring boots!"}]}
    assert gate.check(near)[0] in ("duplicate", "near_duplicate")
    canned = {"id": "d", "messages": [{"role": "assistant", "content": "Lima is warm. I hope this helps!"}]}
    assert gate.check(canned)[0] == "templated"
    assert gate.check({"id": "e", "messages": [{"role": "assistant", "content": "Hanoi: heavy rain all day."}]}) is None


def _stage(tmp_path, out: str, api, state: str, extra=(), write_params=True):
    """The generate stage as dvc.yaml runs it, against a loopback OpenAI-compatible API."""
    import sys

    from tests.conftest import params_file

    if write_params:
        params_file(tmp_path / f"{state}.yaml", {"base": {"generator": {
            "provider": "openai_compat", "model": "mock", "base_url": api.url + "/v1", "concurrency": 2,
            "timeout_s": 5}, "state_dir": str(tmp_path / state)}, "generate": {"per_call": 5}})
        (tmp_path / "corpus.jsonl").write_text("")
    o = tmp_path / out
    return [sys.executable, str(ROOT / "stages/generate.py"), "--params", str(tmp_path / f"{state}.yaml"),
            "--corpus", str(tmp_path / "corpus.jsonl"), "--tools", str(TOOLS), "--database", str(WORLD),
            *(arg for name in ("brief", "opening", "document", "assistant", "user")
              for arg in (f"--{name}-prompt", str(ROOT / "prompts" / f"generate_{name}.md"))),
            "--out", str(o / "corpus.jsonl"), "--plan", str(o / "plan.json"), "--failures", str(o / "failures.jsonl"),
            "--metrics", str(o / "m.json"), "--details", str(o / "d.json"), *extra]


def test_kill_9_mid_generate_then_rerun_loses_nothing_and_pays_only_what_was_in_flight(tmp_path):
    import os
    import subprocess

    from distillery.testing.mock_api import MockAPI
    from tests.conftest import kill_after_journal_lines

    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    with MockAPI(latency_s=0.05) as api:
        clean = _stage(tmp_path, "clean", api, "clean-state")
        assert subprocess.run(clean, env=env, capture_output=True).returncode == 0
        uninterrupted = api.requests
        cmd = _stage(tmp_path, "killed", api, "state")
        kill_after_journal_lines(cmd, env, tmp_path / "state/journal/generate.jsonl", 14, poll_s=0.01)
        out = subprocess.run(cmd, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        paid = api.requests - uninterrupted
    # The same conversations as a run that was never killed, each once; nothing paid twice but the
    # requests that were on the wire at the kill (concurrency 2).
    killed = (tmp_path / "killed/corpus.jsonl").read_text()
    assert killed == (tmp_path / "clean/corpus.jsonl").read_text() and killed.count('"id": "gen-scn-') > 6
    assert uninterrupted <= paid <= uninterrupted + 2


class FailsOnceAfterTheTool(Scripted):
    """The provider errors at the turn after the tool result, once: mid-conversation."""
    failed = False

    def complete_tools(self, messages, tools, *, temperature=None, max_tokens=None, seed=None, tool_choice="auto"):
        if messages[-1]["role"] == "tool" and not self.failed:
            self.failed = True
            from distillery.providers.base import ProviderError
            raise ProviderError("fake: HTTP 500: boom", retryable=False, status=500)
        return super().complete_tools(messages, tools, temperature=temperature, max_tokens=max_tokens, seed=seed,
                                      tool_choice=tool_choice)


def test_a_provider_failing_mid_conversation_resumes_it_without_paying_the_done_turns_again(tmp_path):
    rows = [{"id": "scn-1", "topic": "weather", "persona": "twain"}]
    provider = FailsOnceAfterTheTool()
    journal = Journal(tmp_path / "journal.jsonl")
    records, failures, _ = _run(tmp_path, provider, rows, journal)
    assert records == [] and failures[0]["reason"] == "call_failed"  # recorded, not journaled: retried next run
    before = Counter(provider.calls)
    records, failures, _ = _run(tmp_path, provider, rows, journal)
    assert [r["id"] for r in records] == ["gen-scn-1"] and not failures
    # The brief came from the journal and the tool-calling turn from the cache: one call, the failed turn.
    assert provider.calls - before == Counter(tool_turn=1, tool_choice_auto=1)


def test_with_no_axes_generate_passes_your_corpus_through_and_plans_nothing(tmp_path):
    import os
    import subprocess

    import yaml

    from distillery.records import write_records
    from tests.conftest import conversation

    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"]["axes"] = {}
    params["base"]["state_dir"] = str(tmp_path / "state")
    (tmp_path / "state.yaml").write_text(yaml.safe_dump(params))
    cmd = _stage(tmp_path, "out", None, "state", write_params=False)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    write_records(tmp_path / "corpus.jsonl", [conversation("a", "Sunny."), conversation("b", "Rain.")])
    dry = subprocess.run(cmd + ["--dry-run"], env=env, capture_output=True, text=True)
    assert dry.returncode == 0 and '"calls": 0' in dry.stdout and not (tmp_path / "out").exists()
    assert subprocess.run(cmd, env=env, capture_output=True).returncode == 0
    assert (tmp_path / "out/corpus.jsonl").read_text() == (tmp_path / "corpus.jsonl").read_text()


class Documents(Scripted):
    """Briefs as Scripted writes them; a document for the document prompt; an answer that quotes it."""

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None):
        prompt = messages[-1]["content"]
        if "Write the document" in prompt:
            self.calls["document"] += 1
            words = " ".join(random.Random(prompt).sample(WORDS, 10))
            return Completion(f"Itinerary memo: {words}.", 50, 30, self.name, self.model, meta={"finish_reason": "stop"})
        if prompt.startswith("You are") or messages[0]["role"] == "system":
            self.calls["answer"] += 1
            memo = messages[-1]["content"].split("Itinerary memo: ")[-1]
            return Completion(f"Your memo says {memo}", 50, 20, self.name, self.model, meta={"finish_reason": "stop"})
        return super().complete(messages, temperature=temperature, max_tokens=max_tokens, seed=seed, schema=schema)


def test_document_mode_writes_a_document_then_the_answer_to_it_and_keeps_the_document(tmp_path):
    rows = [{"id": f"scn-{i}", "doc_type": "memo"} for i in range(1, 3)]
    provider = Documents()
    cfg = GenerateParams(axes={"doc_type": ["memo"]}, per_call=2, mode="document")
    engine = Engine(ModelSpec(provider="fake", model="scripted"), CallCache(tmp_path / "cache.sqlite"),
                    provider=provider, backoff_s=0)
    prompts = {name: Prompt(ROOT / "prompts" / f"generate_{name}.md")
               for name in ("brief", "opening", "document", "assistant", "user")}
    briefs, _, _ = write_briefs(rows, engine, prompts, {}, cfg, lambda r: r["id"])
    records, failures, _ = generate_conversations(rows, briefs, lambda r: r["id"], engine, engine, {},
                                                  Database(WORLD), prompts, cfg, Gate([], DiversityParams()))
    assert not failures and provider.calls["document"] == 2 and provider.calls["answer"] == 2
    record = records[0]
    assert [m["role"] for m in record["messages"]] == ["system", "user", "assistant"] and "tools" not in record
    assert record["document"].startswith("Itinerary memo: ") and record["document"] in record["messages"][1]["content"]
    assert record["messages"][2]["content"].endswith(record["document"].split("Itinerary memo: ")[1])


def test_the_plan_prices_each_step_with_the_history_it_will_carry():
    """make plan's generate estimate: later steps send the whole conversation so far, so they cost more
    than the first; more tool rounds or turns cost more; document mode is a document and an answer."""
    from distillery.engine.requests import ToolTurnRequest
    from distillery.generation.conversation import worst_case_steps
    from distillery.engine.requests import prompt_chars

    prompts = {n: Prompt(ROOT / "prompts" / f"generate_{n}.md") for n in ("assistant", "user", "document")}
    decl = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    cfg = GenerateParams(axes={"topic": ["weather"]}, turns=2, max_tool_rounds=2, max_tokens=100)
    steps = worst_case_steps(cfg, prompts, decl)
    assert len(steps) == 2 * 3 + 1  # per turn: a call, a call, the answer; one simulated user message between
    sizes = [prompt_chars(s.messages) for s in steps if isinstance(s, ToolTurnRequest)]
    assert sizes == sorted(sizes) and sizes[-1] - sizes[0] >= 4 * 100 * 8  # each round adds a reply and a result
    fewer = worst_case_steps(GenerateParams(axes={"topic": ["weather"]}, turns=1, max_tool_rounds=0), prompts, decl)
    assert len(fewer) == 1
    doc = worst_case_steps(GenerateParams(axes={"x": ["memo"]}, mode="document"), prompts, decl)
    assert len(doc) == 2


def test_with_a_hosted_provider_each_conversation_goes_on_as_soon_as_its_reply_is_in(world):
    """No waves: conversation B runs to its end (assistant, simulated user, assistant) while A's first
    reply is still outstanding. Waves would hold B's second step until A's first returned: a deadlock here."""
    import threading
    from types import SimpleNamespace

    from distillery.generation.conversation import converse, start

    b_done, waited_out = threading.Event(), []

    class Engine:
        provider = SimpleNamespace(batches_on_device=False)

        def workers(self):
            return 4

        def one(self, request):
            last = request.messages[-1]["content"]
            if last == "A opens" and not b_done.wait(timeout=5):
                waited_out.append("A")
            text = "B asks again" if "B answered" in last else ("B answered" if "B" in last else "A answered")
            if last == "B asks again":
                b_done.set()
            return Completion(text, 1, 1, "stub", "stub", meta={"finish_reason": "stop"})

    prompts = {n: Prompt(ROOT / "prompts" / f"generate_{n}.md") for n in ("assistant", "user", "document")}
    cfg = GenerateParams(axes={"topic": ["weather"]}, turns=2)
    convs = [start({"id": k, "topic": "weather"}, {"situation": "s", "opening": f"{k} opens"}, prompts["assistant"],
                   world, 0) for k in ("A", "B")]
    engine = Engine()
    converse(convs, engine, engine, {}, prompts, cfg)
    assert not waited_out and all(c.wants == "done" and c.failure is None for c in convs)
    assert [m["content"] for m in convs[1].messages] == ["B opens", "B answered", "B asks again", "B answered"]
