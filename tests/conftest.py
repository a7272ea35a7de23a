import json
from pathlib import Path

import pytest

from distillery.engine.cache import CallCache
from distillery.engine.engine import Engine
from distillery.params import FilterParams, ModelSpec, from_dict
from distillery.testing.fake import FakeProvider

ROOT = Path(__file__).resolve().parents[1]

FILTER = {
    "name": "test_filter",
    "dimensions": {
        "relevance": {"weight": 0.5, "description": "on topic"},
        "groundedness": {"weight": 0.3, "description": "true to the tool"},
        "style": {"weight": 0.2, "description": "not canned"},
    },
    "gatekeepers": [{"dimension": "relevance", "below": 3, "cap": 2.0}],
    "tiers": {"high": 7.0, "medium": 4.0, "low": 0.0},
    "positive_min_score": 4.0,
}


@pytest.fixture
def filt() -> FilterParams:
    return from_dict(FilterParams, json.loads(json.dumps(FILTER)), "filter")


@pytest.fixture
def make_engine(tmp_path):
    """Engine over a FakeProvider with the given queued responses and a fresh cache."""
    def make(responses=None, model="fake", temperature=0.0, max_retries=2):
        provider = FakeProvider(model=model, responses=responses)
        spec = ModelSpec(provider="fake", model=model, temperature=temperature, max_tokens=64)
        return Engine(spec, CallCache(tmp_path / "cache.sqlite"), provider=provider,
                      max_retries=max_retries, backoff_s=0.0)
    return make


def conversation(rid: str, answer: str, *, persona="neutral", expect=None, city="Paris") -> dict:
    r = {"id": rid, "tags": {"persona": persona}, "messages": [
        {"role": "system", "content": "You are a weather assistant."},
        {"role": "user", "content": f"Weather in {city}?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": f"c-{rid}", "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": city})}}]},
        {"role": "tool", "tool_call_id": f"c-{rid}", "content": json.dumps({"temp_c": 20, "sky": "sunny"})},
        {"role": "assistant", "content": answer}]}
    if expect:
        r["expect"] = expect
    return r


def merge(base: dict, over: dict) -> dict:
    """`over` laid onto `base`, nested sections merged key by key."""
    for k, v in over.items():
        base[k] = merge(base.get(k, {}), v) if isinstance(v, dict) else v
    return base


def params_file(path, over: dict) -> Path:
    """The shipped params.yaml with `over` laid onto it (a `filter` in `over` replaces the shipped one
    whole: a filter is one definition, not a patch), written to `path`."""
    import yaml

    data = yaml.safe_load((ROOT / "params.yaml").read_text())
    if "filter" in over:
        data.pop("filter")
    data = merge(data, json.loads(json.dumps(over)))
    Path(path).write_text(yaml.safe_dump(data, sort_keys=False))
    return Path(path)


def kill_after_journal_lines(cmd: list[str], env: dict, journal: Path, lines: int, poll_s: float = 0.02) -> None:
    """Start `cmd`, wait until its journal has `lines` lines (at most 60 s), then kill -9 it."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline and (not journal.exists() or len(journal.read_text().splitlines()) < lines):
        time.sleep(poll_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


def restart_when(api, ready, down_s: float = 0.5):
    """A thread that stops the loopback vendor `api` as soon as `ready()` holds, then starts it again on the
    same port after `down_s` (its state kept): a vendor restarting between submit and collect. join() it."""
    import threading
    import time

    def bounce():
        deadline = time.time() + 30
        while not ready() and time.time() < deadline:
            time.sleep(0.01)
        api.stop()
        time.sleep(down_s)
        api.start()

    t = threading.Thread(target=bounce)
    t.start()
    return t
