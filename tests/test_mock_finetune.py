"""MockFineTuneAPI through the real, pinned SDKs: OpenAI's and Together's fine-tuning flows, and each fault."""
import json
import time

import pytest

openai = pytest.importorskip("openai")
together = pytest.importorskip("together")

from distillery.testing.mock_finetune import TOGETHER_USD_PER_MTOK, MockFineTuneAPI  # noqa: E402

BASE_O = "gpt-4o-mini-2024-07-18"
BASE_T = "meta-llama/Meta-Llama-3.1-8B-Instruct-Reference"
OPENAI_END = ("succeeded", "failed", "cancelled")
TOGETHER_END = ("completed", "error", "user_error", "cancelled")


def examples(n=12):
    return "".join(json.dumps({"messages": [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": f"What is the weather in Paris on day {i}?"},
        {"role": "assistant", "content": f"Sunny, {20 + i} degrees."}]}) + "\n" for i in range(n))


@pytest.fixture
def api():
    with MockFineTuneAPI(job_s=0.4) as server:
        yield server


def o_client(api):
    return openai.OpenAI(api_key="sk-test", base_url=api.url + "/v1", max_retries=0, timeout=10)


def t_client(api):
    return together.Together(api_key="sk-test", base_url=api.url, max_retries=0, timeout=10)


def poll(fetch, done, timeout_s=10.0):
    deadline = time.monotonic() + timeout_s
    seen = []
    while True:
        obj = fetch()
        seen.append(obj.status)
        if done(obj):
            return obj, seen
        assert time.monotonic() < deadline, f"the job did not end: {obj}"
        time.sleep(0.02)


def o_upload(client, text=None, purpose="fine-tune"):
    return client.files.create(file=("train.jsonl", (text or examples()).encode(), "application/jsonl"),
                               purpose=purpose)


def t_upload(client, tmp_path, text=None, name="train.jsonl"):
    path = tmp_path / name
    path.write_text(text or examples())
    return client.files.upload(file=path, purpose="fine-tune")


def chat(client, model):
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": "Plan a day in Oslo."}])


# ---- OpenAI ----------------------------------------------------------------------------------------------------

def test_openai_flow_upload_train_events_and_serve(api):
    client = o_client(api)
    f = o_upload(client)
    assert f.purpose == "fine-tune" and api.ft_uploads == 1 and api.training_files[f.id] == examples().encode()
    job = client.fine_tuning.jobs.create(
        model=BASE_O, training_file=f.id, suffix="distill", seed=7, metadata={"run": "r1"},
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 0.5}}})
    assert job.status == "validating_files" and job.fine_tuned_model is None and job.trained_tokens is None
    assert (job.hyperparameters.n_epochs, job.hyperparameters.batch_size) == (2, 4)
    assert job.method.supervised.hyperparameters.learning_rate_multiplier == 0.5
    done, seen = poll(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in OPENAI_END)
    assert done.status == "succeeded" and "running" in seen
    assert done.fine_tuned_model == f"ft:{BASE_O}:mock-org:distill:{job.id[6:14]}"
    assert done.trained_tokens == len(examples()) // 4 * 2
    assert done.finished_at and done.result_files and done.error is None
    assert b"train_loss" in client.files.content(done.result_files[0]).content

    events = client.fine_tuning.jobs.list_events(job.id, limit=100).data  # newest first
    assert events[0].message == "The job has successfully completed"
    metrics = [e.data for e in reversed(events) if e.type == "metrics"]
    assert [m["step"] for m in metrics] == list(range(1, 7))  # 12 examples / batch 4 x 2 epochs
    losses = [m["train_loss"] for m in metrics]
    assert losses == sorted(losses, reverse=True) and len(set(losses)) == len(losses)
    page = client.fine_tuning.jobs.list_events(job.id, limit=3)
    assert len(page.data) == 3 and page.has_more
    assert client.fine_tuning.jobs.list_events(job.id, limit=3, after=page.data[-1].id).data[0].id != page.data[0].id

    tuned, base = chat(client, done.fine_tuned_model), chat(client, BASE_O)
    assert tuned.model == done.fine_tuned_model
    assert tuned.choices[0].message.content != base.choices[0].message.content
    assert chat(client, BASE_O).choices[0].message.content == base.choices[0].message.content
    with pytest.raises(openai.NotFoundError, match="does not exist"):
        chat(client, f"ft:{BASE_O}:mock-org:other:abcdefgh")
    assert api.jobs_created == 1 and api.ft_uploads == 1 and api.job_status(job.id) == "succeeded"


def test_openai_list_pages_and_metadata_filter_and_legacy_hyperparameters(api):
    client = o_client(api)
    f = o_upload(client)
    first = client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id, metadata={"run": "a"},
                                           hyperparameters={"n_epochs": 1, "batch_size": "auto"})
    second = client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id, metadata={"run": "b"})
    assert first.hyperparameters.n_epochs == 1 and second.hyperparameters.n_epochs == 3  # "auto" resolved
    page = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in page.data] == [second.id] and page.has_more
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1, after=second.id).data] == [first.id]
    assert [j.id for j in client.fine_tuning.jobs.list()] == [second.id, first.id]  # auto-paging
    assert [j.id for j in client.fine_tuning.jobs.list(metadata={"run": "a"})] == [first.id]


def test_openai_create_checks(api, tmp_path):
    api.ft_models = {BASE_O}
    client = o_client(api)
    f = o_upload(client)
    batch_file = o_upload(client, purpose="batch")
    with pytest.raises(openai.BadRequestError, match="not available for fine-tuning"):
        client.fine_tuning.jobs.create(model="gpt-nope", training_file=f.id)
    with pytest.raises(openai.BadRequestError, match="no such file"):
        client.fine_tuning.jobs.create(model=BASE_O, training_file="file-missing")
    with pytest.raises(openai.BadRequestError, match="purpose 'fine-tune'"):
        client.fine_tuning.jobs.create(model=BASE_O, training_file=batch_file.id)
    with pytest.raises(openai.BadRequestError, match="n_epochs"):
        client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id, hyperparameters={"n_epochs": 0})
    with pytest.raises(openai.BadRequestError, match="Extra inputs"):
        client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id,
                                       method={"type": "supervised", "supervised": {"hyperparameters": {"lr": 1}}})
    with pytest.raises(openai.NotFoundError):  # with ft_models set, an unknown base is not served either
        chat(client, "gpt-nope")
    assert api.jobs_created == 0
    small = o_upload(client, examples(3))  # too few examples: the job fails in validation, as OpenAI's does
    job = client.fine_tuning.jobs.create(model=BASE_O, training_file=small.id)
    done, _ = poll(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in OPENAI_END)
    assert done.status == "failed" and done.error.code == "invalid_training_file"
    assert "at least 10" in done.error.message and done.fine_tuned_model is None


def test_openai_failed_and_cancelled_jobs(api):
    client = o_client(api)
    f = o_upload(client)
    api.fail_next_job("Mock GPU fell over")
    failing = client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id)
    done, _ = poll(lambda: client.fine_tuning.jobs.retrieve(failing.id), lambda j: j.status in OPENAI_END)
    assert done.status == "failed" and done.error.message == "Mock GPU fell over" and done.trained_tokens is None
    assert client.fine_tuning.jobs.list_events(failing.id).data[0].level == "error"
    with pytest.raises(openai.NotFoundError):
        chat(client, done.fine_tuned_model or f"ft:{BASE_O}:mock-org::{failing.id[6:14]}")

    job = client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id)
    cancelled = client.fine_tuning.jobs.cancel(job.id)
    assert cancelled.status == "cancelled"
    time.sleep(api.job_s * 1.2)
    assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
    assert client.fine_tuning.jobs.list_events(job.id).data[0].message == "Fine-tuning job cancelled"
    with pytest.raises(openai.BadRequestError, match="cannot be cancelled"):
        client.fine_tuning.jobs.cancel(failing.id)
    with pytest.raises(openai.NotFoundError):
        client.fine_tuning.jobs.retrieve("ftjob-missing")


def test_openai_cut_upload_raises_and_keeps_nothing(api):
    client = o_client(api)
    api.cut_next_upload()
    with pytest.raises(openai.APIConnectionError):
        o_upload(client)
    assert api.ft_uploads == 0 and not api.training_files
    f = o_upload(client)
    assert api.ft_uploads == 1 and list(api.training_files) == [f.id]


def test_restart_keeps_jobs_and_files(api):
    client = o_client(api)
    f = o_upload(client)
    job = client.fine_tuning.jobs.create(model=BASE_O, training_file=f.id)
    api.restart()
    done, _ = poll(lambda: client.fine_tuning.jobs.retrieve(job.id), lambda j: j.status in OPENAI_END)
    assert done.status == "succeeded"
    api.stop()
    with pytest.raises(openai.APIConnectionError):
        client.fine_tuning.jobs.retrieve(job.id)
    api.start()
    assert chat(client, done.fine_tuned_model).model == done.fine_tuned_model
    assert api.ft_uploads == 1 and api.jobs_created == 1


# ---- Together --------------------------------------------------------------------------------------------------

def test_together_flow_upload_train_events_price_and_serve(api, tmp_path):
    client = t_client(api)
    f = t_upload(client, tmp_path)  # POST -> 302 -> PUT -> preprocess
    assert api.ft_uploads == 1 and api.training_files[f.id] == examples().encode()
    estimate = client.fine_tuning.estimate_price(training_file=f.id, model=BASE_T, n_epochs=2)
    tokens = len(examples()) // 4 * 2
    assert estimate.estimation_available and estimate.estimated_train_token_count == tokens
    job = client.fine_tuning.create(training_file=f.id, model=BASE_T, n_epochs=2, batch_size=8, lora=True,
                                    lora_r=16, lora_alpha=32, lora_dropout=0.05, learning_rate=1e-4,
                                    warmup_ratio=0.1, n_checkpoints=1, suffix="distill", train_on_inputs="auto")
    assert job.status == "pending" and job.output_name == f"mock-account/Meta-Llama-3.1-8B-Instruct-Reference-" \
                                                          f"distill-{job.id[3:11]}"
    assert job.training_type.lora_r == 16 and job.batch_size == 8 and job.n_epochs == 2
    body = json.loads(next(b for b in reversed(api.bodies) if '"training_file"' in b and '"lr_scheduler"' in b))
    assert body["training_type"] == {"lora_r": 16, "lora_alpha": 32, "lora_dropout": 0.05,
                                     "lora_trainable_modules": "all-linear", "type": "Lora"}
    done, seen = poll(lambda: client.fine_tuning.retrieve(job.id), lambda j: j.status in TOGETHER_END)
    assert done.status == "completed" and "running" in seen
    assert done.x_model_output_name == job.output_name and done.token_count == tokens
    assert done.total_price == round(tokens * TOGETHER_USD_PER_MTOK * 1000)  # nano-dollars
    assert done.total_price / 1e9 == pytest.approx(estimate.estimated_total_price)
    events = client.fine_tuning.list_events(job.id).data  # oldest first
    assert events[0].type == "job_pending" and events[-1].type == "job_complete"
    epochs = [e for e in events if e.type == "epoch_complete"]
    assert [(e.step, e.total_steps) for e in epochs] == [(2, 4), (4, 4)] and "training loss=" in epochs[0].message
    losses = [m["train/loss"] for m in client.fine_tuning.list_metrics(job.id).metrics]
    assert len(losses) == 4 and losses == sorted(losses, reverse=True)
    assert [j.id for j in client.fine_tuning.list().data] == [job.id]

    tuned, base = chat(client, done.x_model_output_name), chat(client, BASE_T)
    assert tuned.choices[0].message.content != base.choices[0].message.content
    assert api.jobs_created == 1 and api.job_status(job.id) == "completed"


def test_together_create_checks(api, tmp_path):
    api.ft_models = {BASE_T}
    client = t_client(api)
    f = t_upload(client, tmp_path)
    with pytest.raises(together.BadRequestError, match="not available for fine-tuning"):
        client.fine_tuning.create(training_file=f.id, model="org/unknown-model")
    with pytest.raises(together.BadRequestError, match="no such file"):
        client.fine_tuning.create(training_file="file-missing", model=BASE_T)
    with pytest.raises(ValueError, match="batch size"):  # the SDK checks against the limits the mock serves
        client.fine_tuning.create(training_file=f.id, model=BASE_T, lora=True, batch_size=4)
    with pytest.raises(together.NotFoundError):
        chat(client, "org/unknown-model")
    assert api.jobs_created == 0
    bad = t_upload(client, tmp_path, '{"messages": [{"role": "robot", "content": "x"}]}\n', "bad.jsonl")
    job = client.fine_tuning.create(training_file=bad.id, model=BASE_T)
    done, _ = poll(lambda: client.fine_tuning.retrieve(job.id), lambda j: j.status in TOGETHER_END)
    assert done.status == "user_error"
    assert "robot" in client.fine_tuning.list_events(job.id).data[-1].message


def test_together_failed_cancelled_and_cut_upload(api, tmp_path):
    client = t_client(api)
    api.cut_next_upload()
    with pytest.raises(together.APIConnectionError):
        t_upload(client, tmp_path)
    assert api.ft_uploads == 0 and not api.training_files
    f = t_upload(client, tmp_path, name="again.jsonl")
    assert api.ft_uploads == 1

    api.fail_next_job("CUDA out of memory (mock)")
    failing = client.fine_tuning.create(training_file=f.id, model=BASE_T)
    done, _ = poll(lambda: client.fine_tuning.retrieve(failing.id), lambda j: j.status in TOGETHER_END)
    assert done.status == "error" and done.total_price == 0
    last = client.fine_tuning.list_events(failing.id).data[-1]
    assert (last.type, last.level, last.message) == ("job_error", "error", "CUDA out of memory (mock)")

    job = client.fine_tuning.create(training_file=f.id, model=BASE_T)
    assert client.fine_tuning.cancel(job.id).status == "cancel_requested"
    done, _ = poll(lambda: client.fine_tuning.retrieve(job.id), lambda j: j.status in TOGETHER_END)
    assert done.status == "cancelled"
    assert [e.type for e in client.fine_tuning.list_events(job.id).data][-2:] == ["cancel_requested", "job_stopped"]
    with pytest.raises(together.NotFoundError):
        chat(client, done.x_model_output_name)
    with pytest.raises(together.NotFoundError):
        client.fine_tuning.retrieve("ft-missing")
    assert api.jobs_created == 2


def test_base_models_answer_as_before():
    """A MockFineTuneAPI answers a base model byte for byte as MockAPI does."""
    from distillery.testing.mock_api import MockAPI
    req = {"model": "m", "messages": [{"role": "user", "content": "What is the weather in Paris today?"}]}
    raw = json.dumps(req)
    with MockAPI() as plain, MockFineTuneAPI() as ft:
        assert ft.answer("/v1/chat/completions", req, raw) == plain.answer("/v1/chat/completions", req, raw)
