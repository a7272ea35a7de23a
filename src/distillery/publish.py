"""Push the chat student to the Hugging Face Hub with a model card written from the run that made it.

    make publish REPO=you/weather-student [PRIVATE=1]          # HF_TOKEN in the environment (or .env)
    python -m distillery.publish --repo-id you/weather-student [--private] [--merged] [--card-only OUT_DIR]

What goes up: the LoRA adapter, its tokenizer and chat template (the training template the student was
trained with) and distillery.json (what evaluate_chat needs to load it), or with --merged the merged
model (train_chat.merge: true); and README.md, the card: base model, data sizes, the params that decided
the run, the evaluation figures and verdict, and the git commit and dvc.lock hashes that produced it, so a
model on the Hub leads back to the data and params. `--card-only DIR` writes the folder that would be
uploaded and uploads nothing. HF_ENDPOINT points huggingface_hub at another Hub (a mirror, a test server).

Publishing is not a DVC stage: `dvc repro` never pushes anything.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import tempfile
from pathlib import Path

import yaml

from distillery.params import load_params

UPLOADED = ("adapter_config.json", "adapter_model.safetensors", "chat_template.jinja", "tokenizer.json",
            "tokenizer_config.json", "special_tokens_map.json", "distillery.json")
TOKEN_HELP = ("no Hugging Face token: set HF_TOKEN to a token with write access "
              "(https://huggingface.co/settings/tokens), in the environment or in .env")


def _read(path: Path) -> dict:
    return json.loads(path.read_text()) if path.exists() else {}


def provenance(root: Path) -> dict:
    """The git commit (and whether the tree had uncommitted changes) and the dvc.lock hashes of this run."""
    def git(*args) -> str | None:
        out = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
        return out.stdout.strip() if out.returncode == 0 else None

    lock = root / "dvc.lock"
    stages = (yaml.safe_load(lock.read_text()) or {}).get("stages", {}) if lock.exists() else {}
    outs = {o["path"]: o.get("md5") for s in stages.values() for o in s.get("outs", [])}
    return {"git_commit": git("rev-parse", "HEAD"), "git_dirty": bool(git("status", "--porcelain")),
            "dvc_lock_sha256": hashlib.sha256(lock.read_bytes()).hexdigest() if lock.exists() else None,
            "model_md5": outs.get("models/chat"), "splits_md5": outs.get("data/splits")}


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def model_card(root: Path, repo_id: str, params_path: Path = Path("params.yaml")) -> str:
    """README.md for the Hub, from the run's own files (the same ones `dvc metrics show` reads)."""
    params = load_params(root / params_path)
    meta = _read(root / "models/chat/distillery.json")
    train = _read(root / "reports/details/train_chat.json")
    ev = _read(root / "reports/details/evaluate_chat.json")
    split = _read(root / "reports/details/split.json")
    prov = provenance(root)
    cfg = params.train_chat
    base_model = meta.get("student", cfg.student)
    hub_base = None if base_model.startswith("pkg:") or Path(base_model).exists() else base_model
    front = {"library_name": "peft", "pipeline_tag": "text-generation", "tags": ["distillery", "lora", "sft"],
             **({"base_model": hub_base} if hub_base else {})}
    lines = ["---", yaml.safe_dump(front, sort_keys=True).strip(), "---", "", f"# {repo_id.split('/')[-1]}", "",
             f"A LoRA chat student of `{base_model}`, distilled with distillery: fine-tuned (TRL SFT, loss on the "
             "assistant's turns only) on conversations an oracle LLM labeled and cleaned of templated answers.", "",
             "## Training", "",
             f"- base model: `{base_model}`" + ("" if hub_base else " (a packaged or local copy, not a Hub id: load "
                                                "the adapter onto the same weights)"),
             f"- LoRA: r {cfg.lora.r}, alpha {cfg.lora.alpha}, dropout {cfg.lora.dropout}, on "
             f"{', '.join(cfg.lora.target_modules)}",
             f"- epochs {cfg.epochs}, learning rate {cfg.learning_rate}, batch {cfg.batch_size} × {cfg.grad_accum}, "
             f"max length {cfg.max_length} tokens, autocast {train.get('autocast', cfg.dtype)}",
             f"- data: {train.get('train_size', '?')} training and {train.get('val_size', '?')} validation "
             f"conversations (split sizes {json.dumps(split.get('sizes', {}))}); "
             f"{train.get('train_tokens', '?')} tokens an epoch",
             f"- loss {train.get('first_loss')} → {train.get('train_loss')}, validation loss {train.get('val_loss')}",
             f"- tool calls: the {meta.get('tool_protocol', 'text')} protocol (distillery's providers/toolproto.py "
             "when the base's template cannot show tools)", ""]
    if ev.get("verdict") and ev["verdict"] != "SKIPPED":
        vs = ev.get("student_vs_base") or {}
        lines += ["## Evaluation", "",
                  f"Verdict: **{ev['verdict']}** ({'; '.join(ev.get('reasons', []))})", "",
                  f"- judge: `{ev.get('judge')}`, {ev.get('test_conversations')} held-out conversations, both orders",
                  f"- student vs base: win rate {_pct(vs.get('win_rate'))} (W/T/L {vs.get('wins')}/{vs.get('ties')}/"
                  f"{vs.get('losses')}), length-controlled {_pct(vs.get('lc_win_rate'))}, judge flip rate "
                  f"{_pct(ev.get('flip_rate'))}",
                  "- Bradley–Terry strengths: " + ", ".join(f"{s} {v:+.3f}" for s, v in (ev.get("strengths") or {}).items()),
                  "- template rate (answers carrying a training-set template): " + ", ".join(
                      f"{s} {_pct(v)}" for s, v in (ev.get("template_rate") or {}).items())]
        if ev.get("valid_tool_calls") is not None:
            lines.append(f"- valid tool calls: {_pct(ev['valid_tool_calls'])}")
        lines.append("")
    lines += ["## Provenance", "",
              f"- git commit: `{prov['git_commit']}`" + (" (with uncommitted changes)" if prov["git_dirty"] else ""),
              f"- dvc.lock sha256: `{prov['dvc_lock_sha256']}`",
              f"- models/chat md5 (dvc.lock): `{prov['model_md5']}`; data/splits md5: `{prov['splits_md5']}`", "",
              "`git checkout <commit> && dvc checkout` (with the project's DVC remote) restores the data, params and "
              "model of this run.", "",
              "## Use", "", "```python", "from peft import AutoPeftModelForCausalLM", "from transformers import AutoTokenizer",
              f'model = AutoPeftModelForCausalLM.from_pretrained("{repo_id}")',
              f'tokenizer = AutoTokenizer.from_pretrained("{repo_id}")', "```", ""]
    return "\n".join(lines)


def stage_folder(root: Path, repo_id: str, out: Path, merged: bool = False) -> Path:
    """The folder to upload: the adapter (or merged model) files and the card."""
    model = root / "models/chat"
    meta = _read(model / "distillery.json")
    if meta.get("kind") != "chat_sft":
        raise SystemExit(f"publish: {model} holds no trained chat student (run `dvc repro train_chat` with "
                         "train_chat.enabled: true)")
    out.mkdir(parents=True, exist_ok=True)
    if merged:
        if not (model / "merged").is_dir():
            raise SystemExit("publish: --merged needs models/chat/merged: set train_chat.merge: true and `dvc repro`")
        shutil.copytree(model / "merged", out, dirs_exist_ok=True)
    else:
        for name in UPLOADED:
            if (model / name).exists():
                shutil.copy(model / name, out / name)
    (out / "README.md").write_text(model_card(root, repo_id), encoding="utf-8")
    return out


def publish(root: Path, repo_id: str, *, private: bool = False, merged: bool = False, api=None) -> str:
    """Create the repo if needed and upload the folder in one commit; returns the commit URL. `api` is an
    HfApi (a test passes its own)."""
    from distillery.providers.base import api_key

    if api is None:
        token = api_key("HF_TOKEN", "huggingface", required=False)  # the environment, else .env
        if not token:
            raise SystemExit(f"publish: {TOKEN_HELP}")
        from huggingface_hub import HfApi

        api = HfApi(token=token)
    prov = provenance(root)
    with tempfile.TemporaryDirectory(prefix="distillery-publish-") as tmp:
        folder = stage_folder(root, repo_id, Path(tmp) / "upload", merged)
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        info = api.upload_folder(repo_id=repo_id, folder_path=str(folder), repo_type="model",
                                 commit_message=f"distillery: chat student from {prov['git_commit'] or 'an untracked tree'}")
    return str(getattr(info, "commit_url", info))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repo-id", required=True, help="the Hub repository, e.g. you/weather-student")
    ap.add_argument("--private", action="store_true")
    ap.add_argument("--merged", action="store_true", help="upload models/chat/merged instead of the adapter")
    ap.add_argument("--card-only", type=Path, help="write the upload folder (card included) here; upload nothing")
    args = ap.parse_args(argv)
    root = Path(".")
    if args.card_only:
        stage_folder(root, args.repo_id, args.card_only, args.merged)
        print(f"publish: wrote {args.card_only}/ (README.md is the card); nothing uploaded")
        return
    print(f"publish: {publish(root, args.repo_id, private=args.private, merged=args.merged)}")


if __name__ == "__main__":
    main()
