"""Tool-using assistant turns: native tool calling through the real SDKs against the loopback MockAPI, the
text protocol for models without it, and the fake provider. Messages, tools and the returned tool calls
are always in the OpenAI format, whatever goes over the wire."""
import json
import re
import sqlite3

import pytest

from distillery.engine.requests import ToolTurnRequest
from distillery.providers import toolproto
from distillery.providers.base import Completion, Provider, ProviderError, get_provider
from distillery.testing.fake import FakeProvider
from distillery.testing.mock_api import MockAPI

KEYS = {"ANTHROPIC_API_KEY": "sk-ant-test", "MISTRAL_API_KEY": "mistral-test", "TOGETHER_API_KEY": "together-test",
        "HF_TOKEN": "hf_test", "OPENAI_API_KEY": "sk-test"}
SUFFIX = {"openai_compat": "/v1", "together": "", "anthropic": "", "mistral": "", "huggingface": ""}
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Forecast for a city and day",
    "parameters": {"type": "object", "required": ["city", "day"],
                   "properties": {"city": {"type": "string"}, "day": {"type": "string", "enum": ["today", "tomorrow"]}}}}}
DIARY = {"type": "function", "function": {
    "name": "add_entry", "description": "Write a diary entry",
    "parameters": {"type": "object", "required": ["text"], "properties": {"text": {"type": "string"}}}}}
ASK = [{"role": "system", "content": "You are a weather assistant."}, {"role": "user", "content": "Weather in Paris?"}]


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    for k, v in KEYS.items():
        monkeypatch.setenv(k, v)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)


def weather_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE weather (city TEXT, day TEXT, sky TEXT, temp_c INTEGER)")
    conn.executemany("INSERT INTO weather VALUES (?, ?, ?, ?)",
                     [("Paris", "today", "sunny", 21), ("Paris", "tomorrow", "rain", 14)])
    return conn


def run_tool(conn, call: dict) -> dict:
    """A stand-in for the executor: the tool message for one call, errors as {"error": …}."""
    fn = call["function"]
    try:
        args = json.loads(fn["arguments"])
        rows = conn.execute("SELECT sky, temp_c FROM weather WHERE city = :city AND day = :day", args).fetchall()
        content = json.dumps({"rows": [{"sky": s, "temp_c": t} for s, t in rows]})
    except (ValueError, sqlite3.Error) as exc:
        content = json.dumps({"error": f"{fn['name']}: {exc}"})
    return {"role": "tool", "tool_call_id": call["id"], "name": fn["name"], "content": content}


def provider(name: str, api: MockAPI):
    return get_provider(name, "test-model", api.url + SUFFIX[name])


# --- native tool calling, real SDKs -------------------------------------------------------------------

@pytest.mark.parametrize("name", list(SUFFIX))
def test_the_model_calls_a_tool_reads_its_result_and_answers(name):
    with MockAPI() as api:
        llm = provider(name, api)
        first = llm.complete_tools(ASK, [WEATHER], temperature=0.0, max_tokens=64)
        [call] = first.tool_calls
        assert call["type"] == "function" and call["function"]["name"] == "get_weather"
        assert json.loads(call["function"]["arguments"]) == {"city": "Paris", "day": "today"}
        assert first.meta["finish_reason"] in ("tool_calls", "tool_use") and first.text == ""
        history = ASK + [{"role": "assistant", "content": None, "tool_calls": first.tool_calls},
                         run_tool(weather_db(), call)]
        final = llm.complete_tools(history, [WEATHER], temperature=0.0, max_tokens=64)
    assert final.tool_calls is None and final.meta["finish_reason"] in ("stop", "end_turn")
    assert final.text.startswith("According to the tool:") and '"sky": "sunny", "temp_c": 21' in final.text
    assert api.requests == 2 and first.input_tokens > 0


@pytest.mark.parametrize("name", list(SUFFIX))
def test_a_call_with_bad_arguments_is_returned_as_sent_not_dropped(name):
    with MockAPI() as api:
        reply = provider(name, api).complete_tools([{"role": "user", "content": "Weather in Paris? FAULT:badargs"}],
                                                   [WEATHER], max_tokens=64)
    [call] = reply.tool_calls
    assert call["function"]["name"] == "get_weather"
    if name == "anthropic":  # Anthropic's input is always an object: the fault is a missing required key
        assert json.loads(call["function"]["arguments"]) == {"day": "today"}
    else:
        with pytest.raises(json.JSONDecodeError):
            json.loads(call["function"]["arguments"])
    assert "error" in json.loads(run_tool(weather_db(), call)["content"])


@pytest.mark.parametrize("name", list(SUFFIX))
def test_an_unknown_tool_name_is_returned_for_the_executor_to_report(name):
    with MockAPI() as api:
        reply = provider(name, api).complete_tools([{"role": "user", "content": "Paris? FAULT:unknowntool"}],
                                                   [WEATHER], max_tokens=64)
    assert [c["function"]["name"] for c in reply.tool_calls] == ["no_such_tool"]


def test_anthropic_gets_tool_use_and_tool_result_blocks_from_openai_history():
    calls = [{"id": "call_1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris", "day": "today"}'}},
             {"id": "call_2", "type": "function", "function": {"name": "add_entry", "arguments": '{"text": "hi"}'}}]
    history = ASK + [{"role": "assistant", "content": "Let me look.", "tool_calls": calls},
                     {"role": "tool", "tool_call_id": "call_1", "name": "get_weather", "content": '{"rows": []}'},
                     {"role": "tool", "tool_call_id": "call_2", "name": "add_entry", "content": '{"error": "disk full"}'}]
    with MockAPI() as api:
        reply = get_provider("anthropic", "claude", api.url).complete_tools(history, [WEATHER, DIARY], max_tokens=64)
    sent = json.loads(api.bodies[-1])
    assert sent["system"] == "You are a weather assistant."
    assert [t["name"] for t in sent["tools"]] == ["get_weather", "add_entry"]
    assert sent["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    user, assistant, results = sent["messages"]
    assert user == {"role": "user", "content": "Weather in Paris?"}
    assert assistant["content"] == [
        {"type": "text", "text": "Let me look."},
        {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris", "day": "today"}},
        {"type": "tool_use", "id": "call_2", "name": "add_entry", "input": {"text": "hi"}}]
    assert results["role"] == "user" and [(b["type"], b["tool_use_id"], b["is_error"]) for b in results["content"]] == [
        ("tool_result", "call_1", False), ("tool_result", "call_2", True)]
    assert reply.text.startswith("According to the tool:") and "disk full" in reply.text and reply.tool_calls is None


def test_mistral_gets_nine_character_ids_that_still_pair_a_call_with_its_result():
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [
        {"id": "toolu_01A-xyz", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "toolu_01A-xyz", "name": "get_weather", "content": '{"rows": []}'}]
    with MockAPI() as api:
        get_provider("mistral", "mistral-small", api.url).complete_tools(history, [WEATHER], max_tokens=64)
    messages = json.loads(api.bodies[-1])["messages"]
    sent_id, result_id = messages[2]["tool_calls"][0]["id"], messages[3]["tool_call_id"]
    assert re.fullmatch(r"[A-Za-z0-9]{9}", sent_id) and sent_id == result_id


@pytest.mark.parametrize("name", ["openai_compat", "mistral", "huggingface"])
def test_arguments_sent_as_an_object_come_back_as_a_json_string(name):
    with MockAPI(object_arguments=True) as api:  # TGI's habit
        reply = provider(name, api).complete_tools(ASK, [WEATHER], max_tokens=64)
    arguments = reply.tool_calls[0]["function"]["arguments"]
    assert isinstance(arguments, str) and json.loads(arguments) == {"city": "Paris", "day": "today"}


def test_a_server_that_refuses_tools_is_switched_to_the_text_protocol_once():
    with MockAPI(tools_unsupported=True) as api:
        llm = provider("openai_compat", api)
        replies = [llm.complete_tools(ASK, [WEATHER], max_tokens=64) for _ in range(2)]
        sent = [json.loads(b) for b in api.bodies]
    assert ["tools" in s for s in sent] == [True, False, False]  # refused once, then the text protocol
    assert "<tool_call>" in sent[-1]["messages"][0]["content"]
    assert all(r.meta["protocol"] == "text" for r in replies)
    assert len(llm.notes) == 1 and "text tool protocol" in llm.notes[0]


# --- the text protocol --------------------------------------------------------------------------------

def test_render_shows_tools_calls_and_results_as_plain_chat_and_parse_reads_the_calls_back():
    calls = [{"id": "c1", "type": "function",
              "function": {"name": "get_weather", "arguments": '{"city": "Paris", "day": "today"}'}}]
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": calls},
                     {"role": "tool", "tool_call_id": "c1", "content": '{"rows": []}'}]  # no name: found from its call
    rendered = toolproto.render(history, [WEATHER])
    assert [m["role"] for m in rendered] == ["system", "user", "assistant", "user"]
    assert rendered[0]["content"].startswith("You are a weather assistant.")
    assert '"name":"get_weather"' in rendered[0]["content"] and "<tool_call>" in rendered[0]["content"]
    assert rendered[3]["content"] == '<tool_result name="get_weather">{"rows": []}</tool_result>'
    text, parsed = toolproto.parse_reply(rendered[2]["content"], history[:2])
    assert text == "" and parsed[0]["function"]["name"] == "get_weather"
    assert json.loads(parsed[0]["function"]["arguments"]) == {"city": "Paris", "day": "today"}
    assert toolproto.render(ASK[1:], [WEATHER])[0]["role"] == "system"  # prepended when there is none


def test_malformed_calls_are_kept_for_the_executor_to_report():
    reply = ('Checking.\n<tool_call>{"name": "get_weather", "arguments": {"city": "Par</tool_call>\n'
             '<tool_call>{"arguments": {}}</tool_call>\n<tool_call>{"name": "get_weather", "arguments": {"ci')
    text, calls = toolproto.parse_reply(reply, ASK)
    assert text == "Checking." and len(calls) == 3  # the last one was cut off: still a call
    assert [c["function"]["name"] for c in calls] == ["get_weather", "", "get_weather"]
    for call in (calls[0], calls[2]):
        with pytest.raises(json.JSONDecodeError):
            json.loads(call["function"]["arguments"])
    assert len({c["id"] for c in calls}) == 3


def test_a_bare_json_reply_is_a_call_only_when_it_names_a_tool_and_gives_arguments():
    _, calls = toolproto.parse_reply('{"name": "get_weather", "arguments": {"city": "Paris"}}', ASK)
    assert calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'}
    assert toolproto.parse_reply('{"name": "Ana", "age": 3}', ASK) == ('{"name": "Ana", "age": 3}', None)


def test_call_ids_are_deterministic_and_differ_between_turns():
    reply = '<tool_call>{"name": "get_weather", "arguments": {}}</tool_call>'
    once, again = toolproto.parse_reply(reply, ASK)[1], toolproto.parse_reply(reply, ASK)[1]
    later = toolproto.parse_reply(reply, ASK + ASK[1:])[1]
    assert once == again and once[0]["id"] != later[0]["id"]


class Scripted(Provider):
    """A plain text model: answers each conversation with the next scripted reply."""
    batches_on_device = True

    def __init__(self, replies):
        super().__init__("scripted")
        self.replies, self.batches = list(replies), []

    def complete_batch(self, batch, *, temperature=None, max_tokens=None, seeds=None, schema=None):
        self.batches.append(batch)
        return [Completion(self.replies.pop(0), 10, 5, "scripted", "scripted",
                           meta={"finish_reason": "length" if i == 2 else "stop"}) for i, _ in enumerate(batch)]


def test_a_device_batch_renders_every_conversation_and_parses_every_reply():
    llm = Scripted(['<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}</tool_call>',
                    "It is sunny.", '<tool_call>{"name": "get_weather", "argu'])
    replies = llm.complete_tools_batch([ASK, ASK, ASK], [WEATHER], temperature=0.0, max_tokens=8, seeds=[1, 2, 3])
    assert len(llm.batches) == 1 and all("<tool_call>" in conv[0]["content"] for conv in llm.batches[0])
    assert [r.meta["finish_reason"] for r in replies] == ["tool_calls", "stop", "length"]  # a cut-off call says so
    assert replies[1].text == "It is sunny." and replies[1].tool_calls is None
    assert replies[2].tool_calls[0]["function"]["name"] == "get_weather"


# --- the fake provider --------------------------------------------------------------------------------

def test_the_fake_provider_calls_a_tool_then_answers_from_the_result_deterministically():
    first = FakeProvider().complete_tools(ASK, [WEATHER, DIARY], seed=1)
    assert first.to_dict() == FakeProvider().complete_tools(ASK, [WEATHER, DIARY], seed=1).to_dict()
    [call] = first.tool_calls
    args = json.loads(call["function"]["arguments"])
    assert call["function"]["name"] in ("get_weather", "add_entry") and first.meta["finish_reason"] == "tool_calls"
    if call["function"]["name"] == "get_weather":
        assert args["city"] == "Paris" and args["day"] in ("today", "tomorrow")
    history = ASK + [{"role": "assistant", "content": None, "tool_calls": [call]},
                     {"role": "tool", "tool_call_id": call["id"], "name": call["function"]["name"],
                      "content": '{"rows": [7]}'}]
    final = FakeProvider().complete_tools(history, [WEATHER, DIARY])
    assert final.tool_calls is None and '{"rows": [7]}' in final.text
    batch = FakeProvider().complete_tools_batch([ASK, history], [WEATHER, DIARY], seeds=[1, None])
    assert [b.to_dict() for b in batch] == [first.to_dict(), final.to_dict()]


def test_the_fake_provider_honours_its_fail_marker_and_reads_queued_replies_as_text_protocol(monkeypatch):
    monkeypatch.setenv("DISTILLERY_FAKE_FAIL_ON", "Paris")
    with pytest.raises(ProviderError, match="fake failure"):
        FakeProvider().complete_tools(ASK, [WEATHER])
    monkeypatch.delenv("DISTILLERY_FAKE_FAIL_ON")
    reply = FakeProvider(responses=['<tool_call>{"name": "get_weather", "arguments": "not json"}</tool_call>'])
    call = reply.complete_tools(ASK, [WEATHER]).tool_calls[0]
    assert call["function"] == {"name": "get_weather", "arguments": "not json"}


def test_tool_calls_survive_the_call_cache(make_engine):
    engine = make_engine()
    request = ToolTurnRequest(ASK, [WEATHER], temperature=0.0, max_tokens=64)
    [paid] = engine.run_all([request])
    [cached] = engine.run_all([ToolTurnRequest(ASK, [WEATHER], temperature=0.0, max_tokens=64)])
    assert paid.tool_calls and cached.tool_calls == paid.tool_calls
    assert len(engine.members[0].provider.calls) == 1


def test_a_block_may_hold_a_list_of_calls_as_smollm2_writes_them():
    reply = ('<tool_call>[{"name": "get_weather", "arguments": {"city": "Paris", "day": "today"}}, '
             '{"name": "add_entry", "arguments": {"text": "rain"}}, 42]</tool_call>')
    _, calls = toolproto.parse_reply(reply, ASK)
    assert [(c["function"]["name"], c["function"]["arguments"]) for c in calls] == [
        ("get_weather", '{"city": "Paris", "day": "today"}'), ("add_entry", '{"text": "rain"}'), ("", "42")]
    assert len({c["id"] for c in calls}) == 3


# --- a required tool call -----------------------------------------------------------------------------

@pytest.mark.parametrize("name,expected", [("openai_compat", "required"), ("together", "required"),
                                           ("huggingface", "required"), ("mistral", "any"),
                                           ("anthropic", {"type": "any"})])
def test_a_required_call_goes_out_in_each_vendors_own_spelling(name, expected):
    with MockAPI() as api:
        llm = provider(name, api)
        reply = llm.complete_tools(ASK, [WEATHER], max_tokens=64, tool_choice="required")
        llm.complete_tools(ASK, [WEATHER], max_tokens=64)
    required, default = (json.loads(b) for b in api.bodies)
    assert required["tool_choice"] == expected and reply.tool_calls
    assert default["tool_choice"] in ("auto", {"type": "auto"})


class Prefilling(Scripted):
    continues_prefill = True

    def complete_batch(self, batch, *, temperature=None, max_tokens=None, seeds=None, schema=None, stop=None):
        self.stop = stop
        return super().complete_batch(batch, temperature=temperature, max_tokens=max_tokens, seeds=seeds)


def test_a_required_call_in_the_text_protocol_is_prefilled_and_what_follows_the_call_is_dropped():
    llm = Prefilling(['get_weather", "arguments": {"city": "Paris", "day": "today"}}</tool_call>\nIt is sunny, 21°C!'])
    [reply] = llm.complete_tools_batch([ASK], [WEATHER], max_tokens=32, tool_choice="required")
    sent = llm.batches[0][0]
    assert sent[-1] == {"role": "assistant", "content": toolproto.PREFILL}  # the reply starts inside a call
    assert reply.tool_calls[0]["function"] == {"name": "get_weather", "arguments": '{"city": "Paris", "day": "today"}'}
    assert reply.text == ""  # "It is sunny" came before the tool result: invented, dropped
    assert llm.stop == ["</tool_call>"]  # the model stops at the call's end rather than run on to max_tokens
    # A provider that cannot continue a reply is told instead; "auto" neither prefills nor insists.
    told = Scripted(["<tool_call>{}</tool_call>"])
    told.complete_tools_batch([ASK], [WEATHER], max_tokens=32, tool_choice="required")
    assert told.batches[0][0][-1]["role"] == "user" and toolproto.MUST_CALL in told.batches[0][0][0]["content"]
    free = Prefilling(["It is sunny."])
    free.complete_tools_batch([ASK], [WEATHER], max_tokens=32)
    assert free.batches[0][0][-1]["role"] == "user" and toolproto.MUST_CALL not in free.batches[0][0][0]["content"]


def test_the_instructions_example_uses_allowed_values():
    system = toolproto.render(ASK, [WEATHER])[0]["content"]
    assert '<tool_call>{"name": "get_weather", "arguments": {"city": "...", "day": "today"}}</tool_call>' in system
