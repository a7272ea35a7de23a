"""Fine-tune a small encoder with a regression head that predicts every filter dimension at once.

transformers' AutoModelForSequenceClassification with problem_type="regression" gives the head and
the MSE loss; Trainer runs the loop, evaluates on val each epoch and keeps the best checkpoint by
validation MAE. With `lora.enabled`, peft wraps the encoder and the adapter is merged before saving,
so evaluate loads a plain model either way. Targets are scaled to 0-1 for training, back for metrics.

While it trains, a progress bar shows steps, ETA and the train RMSE on the filter's scale (the loss is MSE
on 0-1 targets, a figure nobody reads), and DVCLive logs the curves DVC's views pick up: train RMSE per
logging step, val MAE per epoch beside the baseline's (predict the training mean).
"""
from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path

import numpy as np

from distillery.modelpath import resolve_model_path
from distillery.params import FilterParams, TrainParams
from distillery.records import student_text

META_FILE = "distillery.json"


def targets(records: list[dict], filt: FilterParams) -> np.ndarray:
    span = filt.scale_max - filt.scale_min
    return np.array([[(r["labels"][d] - filt.scale_min) / span for d in filt.dimensions] for r in records],
                    dtype=np.float32)


class _Dataset:
    def __init__(self, records, tokenizer, filt, max_length):
        self.enc = tokenizer([student_text(r) for r in records], truncation=True, max_length=max_length)
        self.y = targets(records, filt)

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return {**{k: v[i] for k, v in self.enc.items()}, "labels": self.y[i]}


def build_model(student: str, n_dims: int, cfg: TrainParams):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    path = resolve_model_path(student)
    tokenizer = AutoTokenizer.from_pretrained(path)
    # The student reads context then answer; a long context must lose its start, never the answer.
    tokenizer.truncation_side = "left"
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=n_dims, problem_type="regression")
    if cfg.lora.enabled:
        from peft import LoraConfig, TaskType, get_peft_model

        model = get_peft_model(model, LoraConfig(
            task_type=TaskType.SEQ_CLS, r=cfg.lora.r, lora_alpha=cfg.lora.alpha,
            lora_dropout=cfg.lora.dropout, target_modules=cfg.lora.target_modules))
    return tokenizer, model


def _progress(live, span: float, baseline_val_mae: float):
    """A Trainer callback: the progress bar and the DVCLive curves, both on the filter's scale."""
    from tqdm import tqdm
    from transformers import TrainerCallback

    class Progress(TrainerCallback):
        bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=state.max_steps, desc="train", unit="step", mininterval=1, disable=None)

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(1)

        def on_log(self, args, state, control, logs=None, **kwargs):
            live.step = state.global_step
            if "loss" in logs:
                rmse = math.sqrt(logs["loss"]) * span
                live.log_metric("train/rmse", round(rmse, 4))
                self.bar.set_postfix_str(f"train RMSE {rmse:.3f}")
            if "eval_mae" in logs:
                live.log_metric("val/mae", round(logs["eval_mae"], 4))
                live.log_metric("val/baseline_mae", round(baseline_val_mae, 4))
                self.bar.write(f"train: epoch {state.epoch:.0f}: val MAE {logs['eval_mae']:.3f} "
                               f"(baseline {baseline_val_mae:.3f})")
            live.make_summary()

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return Progress()


def train_student(train: list[dict], val: list[dict], filt: FilterParams, cfg: TrainParams, student: str,
                  out_dir: Path, seed: int, live_dir: Path, baseline_val_mae: float) -> tuple[dict, list[dict]]:
    """Train, save the best model (by val MAE) to out_dir, log curves to live_dir (DVCLive); return
    (summary metrics, log history)."""
    from dvclive import Live
    from transformers import DataCollatorWithPadding, PrinterCallback, Trainer, TrainingArguments, set_seed

    set_seed(seed)  # the new regression head is drawn here: `seed`, not whatever ran before, decides it
    tokenizer, model = build_model(student, len(filt.dimensions), cfg)
    span = filt.scale_max - filt.scale_min

    def compute_metrics(pred):
        err = (pred.predictions - pred.label_ids) * span
        return {"mae": float(np.abs(err).mean()), "rmse": float(np.sqrt((err ** 2).mean()))}

    with tempfile.TemporaryDirectory(prefix="distillery-train-") as ckpt:
        args = TrainingArguments(
            output_dir=ckpt, num_train_epochs=cfg.epochs, per_device_train_batch_size=cfg.batch_size,
            per_device_eval_batch_size=cfg.batch_size * 2, learning_rate=cfg.learning_rate,
            weight_decay=cfg.weight_decay, eval_strategy="epoch", save_strategy="epoch",
            load_best_model_at_end=True, metric_for_best_model="mae", greater_is_better=False,
            save_total_limit=1, logging_strategy="steps", logging_steps=max(1, len(train) // cfg.batch_size // 4),
            report_to=[], seed=seed, data_seed=seed, disable_tqdm=True, save_only_model=True,
            dataloader_pin_memory=_cuda())  # pinning is for GPU copies; on a CPU it only warns
        live = Live(dir=str(live_dir), save_dvc_exp=False, dvcyaml=False)
        trainer = Trainer(model=model, args=args, train_dataset=_Dataset(train, tokenizer, filt, cfg.max_length),
                          eval_dataset=_Dataset(val, tokenizer, filt, cfg.max_length),
                          data_collator=DataCollatorWithPadding(tokenizer), compute_metrics=compute_metrics,
                          callbacks=[progress := _progress(live, span, baseline_val_mae)])
        trainer.remove_callback(PrinterCallback)  # raw log dicts; the progress bar says it on the right scale
        result = trainer.train()
        live.end()
        history = list(trainer.state.log_history)
        trainer.remove_callback(progress)  # the best checkpoint's evaluation below is not a new epoch
        best = trainer.evaluate()
        model = trainer.model
        if cfg.lora.enabled:
            model = model.merge_and_unload()
        out_dir.mkdir(parents=True, exist_ok=True)
        # config.json names each output by its dimension, not LABEL_0, LABEL_1, …
        model.config.id2label = dict(enumerate(filt.dimensions))
        model.config.label2id = {d: i for i, d in enumerate(filt.dimensions)}
        model.save_pretrained(out_dir)
        tokenizer.save_pretrained(out_dir)
    (out_dir / META_FILE).write_text(json.dumps({
        "dimensions": list(filt.dimensions), "scale": [filt.scale_min, filt.scale_max],
        "student": student, "max_length": cfg.max_length, "lora": cfg.lora.enabled}, indent=2))
    summary = {"train_loss": round(result.training_loss, 5), "best_val_mae": round(best["eval_mae"], 4),
               "train_rmse": round(math.sqrt(result.training_loss) * span, 4),
               "baseline_val_mae": round(baseline_val_mae, 4),
               "best_val_rmse": round(best["eval_rmse"], 4), "epochs": cfg.epochs,
               "train_size": len(train), "val_size": len(val), "lora": cfg.lora.enabled,
               "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad)}
    return summary, history


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def curves(history: list[dict], span: float, baseline_val_mae: float) -> list[dict]:
    """The curves of a finished run, for the report's figure: (step, series, value) rows on the filter's scale."""
    rows = [{"step": h["step"], "series": "train RMSE", "value": round(math.sqrt(h["loss"]) * span, 4)}
            for h in history if "loss" in h]
    for h in history:
        if "eval_mae" in h:
            rows += [{"step": h["step"], "series": "val MAE", "value": round(h["eval_mae"], 4)},
                     {"step": h["step"], "series": "val MAE of the baseline", "value": round(baseline_val_mae, 4)}]
    return rows


def load_student(model_dir: Path):
    """(tokenizer, model, meta) of a saved student."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    meta = json.loads((model_dir / META_FILE).read_text())
    return (AutoTokenizer.from_pretrained(model_dir),
            AutoModelForSequenceClassification.from_pretrained(model_dir).eval(), meta)


def predict(records: list[dict], model_dir: Path, batch_size: int = 32) -> np.ndarray:
    """Predicted dimension scores (on the filter's scale), one row per record."""
    import torch

    tokenizer, model, meta = load_student(model_dir)
    tokenizer.truncation_side = "left"  # as in training: keep the answer, cut the oldest context
    lo, hi = meta["scale"]
    rows = []
    with torch.no_grad():
        for start in range(0, len(records), batch_size):
            texts = [student_text(r) for r in records[start:start + batch_size]]
            enc = tokenizer(texts, truncation=True, max_length=meta["max_length"], padding=True, return_tensors="pt")
            rows.append(model(**enc).logits.float().numpy())
    pred = np.concatenate(rows) if rows else np.zeros((0, len(meta["dimensions"])))
    return np.clip(lo + pred * (hi - lo), lo, hi)
