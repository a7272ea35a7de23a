"""Synthetic responses with templates injected at known rates and positions, to measure detection.

Varied filler comes from random sentences over a pseudo-word vocabulary (no phrase recurs by chance);
four kinds of template are injected: two verbatim stock sentences (start and end), a frame with a slot
(a city, an adjective) mid-answer, and a family of three light paraphrases. `truth[i]` names what was
injected into response i (or None), so precision and recall can be computed exactly.
"""
from __future__ import annotations

import random

CITIES = ["Paris", "Lisbon", "Tokyo", "Denver", "Nairobi", "Oslo", "Lima", "Hanoi", "Toronto", "Cairo",
          "Seattle", "Rome", "Sydney", "Prague", "Austin", "Dublin", "Seoul", "Quito", "Accra", "Perth"]
ADJECTIVES = ["bright", "gloomy", "unsettled", "mild", "stormy", "crisp", "humid", "breezy"]
TEMPLATES = {
    "opener": ("start", 0.15, ["Here's the information you requested."]),
    "closer": ("end", 0.10, ["Let me know if there is anything else I can do for you."]),
    "frame": ("middle", 0.08, ["The forecast for {city} looks {adj} for the rest of this week."]),
    "paraphrase": ("end", 0.09, ["I hope this information proves useful to you today.",
                                 "I hope this information proves helpful to you today.",
                                 "I hope that this information proves useful to you today."]),
}
TOPICS = ["weather", "flights", "hotels"]


def vocabulary(rng: random.Random, n: int = 3000) -> list[str]:
    syllables = ["ka", "lo", "mi", "su", "te", "ra", "vo", "ne", "pi", "da", "gu", "fe", "zo", "bri", "tal", "mon"]
    vocab = set()
    while len(vocab) < n:
        vocab.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 3))))
    return sorted(vocab)


def sentence(rng: random.Random, vocab: list[str]) -> str:
    return " ".join(rng.choice(vocab) for _ in range(rng.randint(7, 14))).capitalize() + "."


def make_responses(n: int, seed: int = 0, sentences: tuple[int, int] = (2, 4)):
    """(texts, topics, truth) for n responses."""
    rng = random.Random(seed)
    vocab = vocabulary(rng)
    texts, topics, truth = [], [], []
    for _ in range(n):
        body = [sentence(rng, vocab) for _ in range(rng.randint(*sentences))]
        r, kind = rng.random(), None
        for name, (_, rate, _) in TEMPLATES.items():
            if r < rate:
                kind = name
                break
            r -= rate
        if kind:
            where, _, variants = TEMPLATES[kind]
            text = rng.choice(variants).format(city=rng.choice(CITIES), adj=rng.choice(ADJECTIVES))
            if where == "start":
                body.insert(0, text)
            elif where == "end":
                body.append(text)
            else:
                body.insert(len(body) // 2, text)
        texts.append(" ".join(body))
        topics.append(rng.choice(TOPICS))
        truth.append(kind)
    return texts, topics, truth
