"""MockBatchAPI through the real, pinned SDKs: each vendor's batch flow, and each fault."""
import json
import time
import urllib.request

import pytest

anthropic = pytest.importorskip("anthropic")
openai = pytest.importorskip("openai")
together = pytest.importorskip("together")
mistral_client = pytest.importorskip("mistralai.client")

from distillery.testing.mock_batches import MockBatchAPI  # noqa: E402

ORACLE = ('Score this reply.\nReply with JSON only: {"scores": {"relevance": <0-10>, "style": <0-10>}, '
          '"reasoning": "<why>"}')
PROMPTS = {"a": "What is the weather in Paris today?", "b": "Plan a day in Oslo.", "oracle": ORACLE}
ANTHROPIC_END = "ended"
OPENAI_END = ("completed", "failed", "expired", "cancelled")
TOGETHER_END = ("COMPLETED", "FAILED", "EXPIRED", "CANCELLED")
MISTRAL_END = ("SUCCESS", "FAILED", "TIMEOUT_EXCEEDED", "CANCELLED")


@pytest.fixture
def api():
    with MockBatchAPI(turnaround_s=0.2) as server:
        yield server


def msgs(text):
    return [{"role": "user", "content": text}]


def live(api, path, body):
    """The live route's reply to the same request, for comparison."""
    req = urllib.request.Request(api.url + path, data=json.dumps(body).encode(), method="POST",
                                 headers={"content-type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read())


def poll(fetch, done, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    while True:
        obj = fetch()
        if done(obj):
            return obj
        assert time.monotonic() < deadline, f"batch did not end: {obj}"
        time.sleep(0.03)


# ---- clients ---------------------------------------------------------------------------------------------------

def a_client(api):
    return anthropic.Anthropic(api_key="sk-test", base_url=api.url, max_retries=0, timeout=10)


def o_client(api):
    return openai.OpenAI(api_key="sk-test", base_url=api.url + "/v1", max_retries=0, timeout=10)


def t_client(api, base=None):
    return together.Together(api_key="sk-test", base_url=base or api.url, max_retries=0, timeout=10)


def m_client(api):
    return mistral_client.Mistral(api_key="sk-test", server_url=api.url, timeout_ms=10_000)


def a_batch(client, prompts):
    return client.messages.batches.create(requests=[
        {"custom_id": cid, "params": {"model": "claude-test", "max_tokens": 64, "messages": msgs(p)}}
        for cid, p in prompts.items()])


def a_results(client, batch_id):
    poll(lambda: client.messages.batches.retrieve(batch_id), lambda b: b.processing_status == ANTHROPIC_END)
    return {r.custom_id: r.result for r in client.messages.batches.results(batch_id)}


def o_lines(prompts, model="gpt-test"):
    return "".join(json.dumps({"custom_id": cid, "method": "POST", "url": "/v1/chat/completions",
                               "body": {"model": model, "messages": msgs(p)}}) + "\n"
                   for cid, p in prompts.items()).encode()


def o_batch(client, prompts, **kwargs):
    f = client.files.create(file=("in.jsonl", o_lines(prompts), "application/jsonl"), purpose="batch")
    return client.batches.create(input_file_id=f.id, endpoint="/v1/chat/completions", completion_window="24h",
                                 **kwargs)


def file_lines(data: bytes):
    return {line["custom_id"]: line for line in map(json.loads, data.decode().splitlines())}


# ---- each vendor end to end -----------------------------------------------------------------------------------

def test_anthropic_batch_matches_live_replies(api):
    client = a_client(api)
    batch = a_batch(client, PROMPTS)
    assert batch.processing_status == "in_progress" and batch.request_counts.processing == 3
    assert batch.results_url is None
    ended = poll(lambda: client.messages.batches.retrieve(batch.id), lambda b: b.processing_status == "ended")
    assert ended.request_counts.succeeded == 3 and ended.request_counts.processing == 0
    assert ended.ended_at is not None and ended.created_at <= ended.ended_at
    results = a_results(client, batch.id)
    assert set(results) == set(PROMPTS)
    for cid, prompt in PROMPTS.items():
        assert results[cid].type == "succeeded"
        expected = live(api, "/v1/messages", {"model": "claude-test", "max_tokens": 64, "messages": msgs(prompt)})
        assert results[cid].message.model_dump() == anthropic.types.Message.model_validate(expected).model_dump()
    scores = json.loads(results["oracle"].message.content[0].text)["scores"]
    assert set(scores) == {"relevance", "style"}
    assert [b.id for b in client.messages.batches.list(limit=5)] == [batch.id]
    assert api.batches_created == 1 and api.downloads == 1 and api.uploads == 0
    assert api.submitted == {"a": 1, "b": 1, "oracle": 1}


def test_openai_batch_matches_live_replies(api):
    client = o_client(api)
    batch = o_batch(client, PROMPTS, metadata={"run": "r1", "stage": "label"})
    assert batch.status == "validating" and batch.metadata == {"run": "r1", "stage": "label"}
    done = poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    assert done.status == "completed" and done.request_counts.completed == 3 and done.request_counts.failed == 0
    assert done.error_file_id is None and done.completed_at
    lines = file_lines(client.files.content(done.output_file_id).content)
    assert set(lines) == set(PROMPTS)
    for cid, prompt in PROMPTS.items():
        line = lines[cid]
        assert line["error"] is None and line["response"]["status_code"] == 200
        assert line["response"]["body"] == live(api, "/v1/chat/completions",
                                                {"model": "gpt-test", "messages": msgs(prompt)})
    assert "scores" in json.loads(lines["oracle"]["response"]["body"]["choices"][0]["message"]["content"])
    listed = client.batches.list(limit=10)
    assert [b.id for b in listed.data] == [batch.id] and listed.data[0].metadata["run"] == "r1"
    assert api.uploads == 1 and api.downloads == 1


def test_together_batch_upload_flow_and_results(api, tmp_path):
    client = t_client(api, base=api.url + "/v1")  # a base ending in /v1 works too (together 3.x paths carry /v1)
    path = tmp_path / "in.jsonl"
    path.write_text("".join(json.dumps({"custom_id": cid, "body": {"model": "llama-test", "messages": msgs(p)}}) + "\n"
                            for cid, p in PROMPTS.items()))
    uploaded = client.files.upload(file=path, purpose="batch-api")  # POST -> 302 -> PUT -> preprocess
    assert uploaded.id.startswith("file-") and uploaded.bytes == path.stat().st_size and api.uploads == 1
    job = client.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions").job
    assert job.status == "VALIDATING" and job.progress == 0
    done = poll(lambda: client.batches.retrieve(job.id), lambda b: b.status in TOGETHER_END)
    assert done.status == "COMPLETED" and done.progress == 100 and done.error_file_id is None
    lines = file_lines(client.files.content(done.output_file_id).read())
    for cid, prompt in PROMPTS.items():
        assert lines[cid]["response"]["body"] == live(api, "/v1/chat/completions",
                                                      {"model": "llama-test", "messages": msgs(prompt)})
    assert [j.id for j in client.batches.list()] == [job.id]
    # The live route through the same client still answers.
    reply = client.chat.completions.create(model="llama-test", messages=msgs(PROMPTS["a"]))
    assert reply.choices[0].message.content == lines["a"]["response"]["body"]["choices"][0]["message"]["content"]


def test_mistral_batch_matches_live_replies_and_filters_by_metadata(api):
    client = m_client(api)
    data = "".join(json.dumps({"custom_id": cid, "body": {"messages": msgs(p), "max_tokens": 64}}) + "\n"
                   for cid, p in PROMPTS.items()).encode()
    uploaded = client.files.upload(file={"file_name": "in.jsonl", "content": data}, purpose="batch")
    job = client.batch.jobs.create(endpoint="/v1/chat/completions", input_files=[uploaded.id],
                                   model="mistral-test", metadata={"run": "r1"})
    other = client.batch.jobs.create(endpoint="/v1/chat/completions", model="mistral-test", metadata={"run": "r2"},
                                     requests=[{"custom_id": "x", "body": {"messages": msgs("inline")}}])
    assert job.status == "QUEUED" and job.total_requests == 3
    done = poll(lambda: client.batch.jobs.get(job_id=job.id), lambda b: b.status in MISTRAL_END)
    assert (done.status, done.succeeded_requests, done.failed_requests, done.error_file) == ("SUCCESS", 3, 0, None)
    lines = file_lines(client.files.download(file_id=done.output_file).read())
    for cid, prompt in PROMPTS.items():
        assert lines[cid]["response"]["body"] == live(api, "/v1/chat/completions",
                                                      {"messages": msgs(prompt), "max_tokens": 64,
                                                       "model": "mistral-test"})
    assert [j.id for j in client.batch.jobs.list(metadata={"run": "r1"}).data] == [job.id]
    assert client.batch.jobs.list().total == 2
    inline = poll(lambda: client.batch.jobs.get(job_id=other.id, inline=True), lambda b: b.status in MISTRAL_END)
    assert inline.outputs[0]["custom_id"] == "x"


# ---- faults ---------------------------------------------------------------------------------------------------

def test_batch_error_every_time_and_x1_only_first_batch(api):
    client = a_client(api)
    prompts = {"ok": "fine", "always": "FAULT:batch_error here", "once": "FAULT:batch_errorx1 here"}
    first = a_results(client, a_batch(client, prompts).id)
    assert {k: r.type for k, r in first.items()} == {"ok": "succeeded", "always": "errored", "once": "errored"}
    assert first["always"].error.error.type == "api_error"
    second = a_results(client, a_batch(client, prompts).id)
    assert {k: r.type for k, r in second.items()} == {"ok": "succeeded", "always": "errored", "once": "succeeded"}
    assert api.submitted["once"] == 2 and api.batches_created == 2


def test_openai_errored_request_goes_to_error_file_and_live_markers_apply(api):
    client = o_client(api)
    batch = o_batch(client, {"ok": "fine", "bad": "FAULT:batch_error", "limited": "FAULT:429",
                             "oracle": ORACLE + " FAULT:missing_dim"})
    done = poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    assert done.status == "completed" and (done.request_counts.completed, done.request_counts.failed) == (2, 2)
    errors = file_lines(client.files.content(done.error_file_id).content)
    assert errors["bad"]["response"]["status_code"] == 500 and errors["limited"]["response"]["status_code"] == 429
    output = file_lines(client.files.content(done.output_file_id).content)
    scores = json.loads(output["oracle"]["response"]["body"]["choices"][0]["message"]["content"])["scores"]
    assert set(scores) == {"style"}  # missing_dim drops the first dimension, as live


def test_expire_next(api):
    client = a_client(api)
    api.expire_next(keep=1)
    results = a_results(client, a_batch(client, PROMPTS).id)
    assert sorted(r.type for r in results.values()) == ["expired", "expired", "succeeded"]
    assert results["a"].type == "succeeded"
    oclient = o_client(api)
    api.expire_next(keep=2)
    batch = o_batch(oclient, PROMPTS)
    done = poll(lambda: oclient.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    assert done.status == "expired" and done.expired_at
    assert set(file_lines(oclient.files.content(done.output_file_id).content)) == {"a", "b"}
    errors = file_lines(oclient.files.content(done.error_file_id).content)
    assert errors["oracle"]["error"]["code"] == "batch_expired" and errors["oracle"]["response"] is None
    # The next batch is not affected.
    results = a_results(client, a_batch(client, PROMPTS).id)
    assert {r.type for r in results.values()} == {"succeeded"}


def test_fail_next(api):
    oclient, mclient, aclient = o_client(api), m_client(api), a_client(api)
    api.fail_next(keep=1)
    batch = o_batch(oclient, PROMPTS)
    done = poll(lambda: oclient.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    assert done.status == "failed" and done.failed_at and done.errors.data[0].code == "batch_failed"
    assert set(file_lines(oclient.files.content(done.output_file_id).content)) == {"a"}
    api.fail_next(keep=2)
    job = mclient.batch.jobs.create(endpoint="/v1/chat/completions", model="m",
                                    requests=[{"custom_id": k, "body": {"messages": msgs(v)}} for k, v in PROMPTS.items()])
    done = poll(lambda: mclient.batch.jobs.get(job_id=job.id), lambda b: b.status in MISTRAL_END)
    assert done.status == "FAILED" and done.succeeded_requests == 2 and done.errors
    api.fail_next(keep=0)  # Anthropic has no failed state: the batch ends, the rest canceled
    results = a_results(aclient, a_batch(aclient, PROMPTS).id)
    assert {r.type for r in results.values()} == {"canceled"}


def test_cancel_keeps_finished_requests():
    with MockBatchAPI(turnaround_s=5.0) as api:
        client = a_client(api)
        batch = a_batch(client, PROMPTS)
        canceling = client.messages.batches.cancel(batch.id)
        assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
        api.cancel_s = 0.1
        results = a_results(client, batch.id)
        assert {r.type for r in results.values()} == {"canceled"}
        tclient = t_client(api)
        uploaded = tclient.files.upload(file=_together_file(api, PROMPTS), purpose="batch-api", check=False)
        job = tclient.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions").job
        api.batches[job.id].started -= 4.0  # 4 s of 5 gone: most requests finished
        cancelled = tclient.batches.cancel(job.id)
        assert cancelled.status == "CANCELLED"
        done_so_far = api.batches[job.id].cancel_done
        assert 0 < done_so_far < 3
        output = file_lines(tclient.files.content(cancelled.output_file_id).read())
        errors = file_lines(tclient.files.content(cancelled.error_file_id).read())
        assert len(output) == done_so_far and {e["error"]["code"] for e in errors.values()} == {"batch_cancelled"}
        oclient = o_client(api)
        batch = o_batch(oclient, PROMPTS)
        assert oclient.batches.cancel(batch.id).status == "cancelling"
        assert poll(lambda: oclient.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END).status == "cancelled"


_counter = iter(range(1000))


def _together_file(api, prompts):
    import tempfile
    from pathlib import Path
    path = Path(tempfile.mkdtemp()) / f"in{next(_counter)}.jsonl"
    path.write_text("".join(json.dumps({"custom_id": k, "body": {"model": "m", "messages": msgs(v)}}) + "\n"
                            for k, v in prompts.items()))
    return path


def test_cut_download_is_an_error_and_the_next_download_is_whole(api):
    client = o_client(api)
    batch = o_batch(client, PROMPTS)
    done = poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    api.cut_next_download()
    with pytest.raises(openai.APIConnectionError):
        client.files.content(done.output_file_id)
    assert len(file_lines(client.files.content(done.output_file_id).content)) == 3
    aclient = a_client(api)
    abatch = a_batch(aclient, PROMPTS)
    a_results(aclient, abatch.id)
    api.cut_next_download()
    with pytest.raises(Exception, match="peer closed connection|incomplete|Connection"):
        list(aclient.messages.batches.results(abatch.id))  # the SDK streams: the error comes while reading
    assert api.downloads == 4


def test_restart_keeps_state_and_stop_refuses_connections(api):
    client = o_client(api)
    batch = o_batch(client, PROMPTS)
    port = api.port
    api.restart()
    assert api.port == port
    done = poll(lambda: client.batches.retrieve(batch.id), lambda b: b.status in OPENAI_END)
    assert done.status == "completed"
    api.stop()
    with pytest.raises(openai.APIConnectionError):
        client.batches.retrieve(batch.id)
    api.start()
    assert client.batches.retrieve(batch.id).output_file_id == done.output_file_id
    assert api.url.endswith(f":{port}")


def test_request_limits_and_custom_id_validation(api):
    oclient, aclient, tclient = o_client(api), a_client(api), t_client(api)
    api.limits["openai"] = 3
    with pytest.raises(openai.BadRequestError, match="at most 3"):
        o_batch(oclient, {**PROMPTS, "d": "one too many"})
    api.limits["anthropic"] = 2
    with pytest.raises(anthropic.BadRequestError, match="at most 2"):
        a_batch(aclient, PROMPTS)
    api.limits["anthropic"] = 100_000
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        a_batch(aclient, {"not valid!": "x"})
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        a_batch(aclient, {"x" * 65: "x"})
    with pytest.raises(anthropic.BadRequestError, match="not unique"):
        aclient.messages.batches.create(requests=[
            {"custom_id": "same", "params": {"model": "m", "max_tokens": 5, "messages": msgs("x")}}] * 2)
    uploaded = tclient.files.upload(file=_together_file(api, {"y" * 65: "x"}), purpose="batch-api", check=False)
    with pytest.raises(together.BadRequestError, match="64"):
        tclient.batches.create(input_file_id=uploaded.id, endpoint="/v1/chat/completions")
    assert api.batches_created == 0 and not api.submitted
