"""Write the shipped demo corpus: tool-using weather/travel conversations, half of them templated.

    python -m distillery.testing.demo_corpus --out data/raw    # writes corpus.jsonl and style.jsonl

Seeded, so the shipped files are reproducible. About half the final answers are built on four stock
phrases (the way LLM-generated sets are: one reported set reused 4 phrases in 59% of 14,399 answers);
some answers contradict their tool result or are unhelpful, and some conversations are off-topic, so
the oracle's labels spread across tiers. `expect` hints mark records for calibration and validation.
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

CITIES = ["Paris", "Lisbon", "Tokyo", "Denver", "Nairobi", "Oslo", "Lima", "Hanoi", "Toronto", "Cairo",
          "Seattle", "Rome", "Sydney", "Reykjavik", "Mumbai", "Chicago", "Prague", "Austin", "Dublin", "Seoul"]
DAYS = ["today", "tomorrow", "on Saturday", "on Sunday", "this weekend", "on Monday", "next Friday"]
# How a user says the day -> the `day` argument the demo's tools take (demo_world.DAYS), so every tool
# call in the corpus is valid against data/raw/tools.json: a chat student learns calls it can make.
DAY_ARGUMENT = {"today": "today", "tomorrow": "tomorrow", "on Saturday": "saturday", "on Sunday": "sunday",
                "this weekend": "saturday", "on Monday": "monday", "next Friday": "friday"}
CONDITIONS = ["sunny", "partly cloudy", "overcast", "light rain", "heavy rain", "snow", "thunderstorms", "fog", "windy"]
AIRLINES = ["SkyJet", "Aurora Air", "BlueLine", "Meridian", "NorthStar"]
HOTELS = ["Harbor Inn", "The Linden", "Casa Verde", "Station Lodge", "Old Town Suites", "Riverside Hotel"]
PERSONAS = {
    "twain": "You are a weather and travel assistant who talks like Mark Twain: dry, wry, fond of a tall tale.",
    "franklin": "You are a weather and travel assistant who talks like Benjamin Franklin: thrifty, practical, aphoristic.",
    "neutral": "You are a concise, neutral weather and travel assistant.",
    "concierge": "You are a warm hotel concierge who helps guests with weather and travel plans.",
}
STOCK = {  # the four stock phrases; {city} is a slot, as in real templated sets
    "info": "Here's the information you requested for {city}.",
    "twain": "Climate is what we expect, weather is what we get.",
    "franklin": "Early to bed and early to rise makes a man healthy, wealthy and wise.",
    "hope": "I hope this helps! Let me know if you need anything else.",
}
OFF_TOPIC = [
    ("Can you give me a recipe for banana bread?", "Mash three ripe bananas, mix with melted butter, sugar, an egg, flour and baking soda, then bake at 175°C for an hour."),
    ("What is the derivative of x squared?", "The derivative of x squared is 2x, by the power rule."),
    ("Write me a short poem about my cat.", "Soft paws at dawn, a purr like distant rain, my cat rules the windowsill again."),
    ("Who won the chess world championship in 1972?", "Bobby Fischer beat Boris Spassky in Reykjavik in 1972."),
    ("How do I reset my router?", "Hold the reset button for about ten seconds until the lights blink, then set it up again."),
    ("Recommend a good science fiction novel.", "Try The Left Hand of Darkness by Ursula K. Le Guin; it is thoughtful and strange."),
    ("How many legs does a spider have?", "Spiders have eight legs."),
    ("Explain what a mortgage is.", "A mortgage is a loan secured by a property, repaid with interest over many years."),
]


def weather_facts(rng, city, day, w) -> str:
    options = [
        f"{city} {day}: {w['condition']}, around {w['temp_c']}°C, with a {w['precip_pct']}% chance of rain.",
        f"Expect {w['condition']} skies in {city} {day} and temperatures near {w['temp_c']}°C.",
        f"The forecast for {city} {day} shows {w['condition']} at about {w['temp_c']}°C; wind {w['wind_kph']} km/h.",
        f"It looks {w['condition']} in {city} {day}, roughly {w['temp_c']} degrees, rain chance {w['precip_pct']}%.",
    ]
    return rng.choice(options)


def advice(rng, w, persona) -> str:
    wet = w["precip_pct"] > 50 or "rain" in w["condition"] or "storm" in w["condition"]
    cold = w["temp_c"] < 8
    pool = {
        "twain": ["Pack an umbrella and a sense of humour; you will need both." if wet else
                  "The sky is behaving itself, which is more than I can say for most of us.",
                  "Dress in layers, for the weather there changes its mind faster than a politician." if cold else
                  "Leave the overcoat at home and let the sun do the tailoring."],
        "franklin": ["A penny spent on a raincoat saves a pound on a ruined suit." if wet else
                     "Fair skies are a fine time to walk and save the cab fare.",
                     "Bundle up; a cold caught abroad is an expense no traveller budgets for." if cold else
                     "Light clothing and an early start will serve you well."],
        "neutral": ["Bring a rain jacket." if wet else "No rain gear needed.",
                    "A warm coat is advisable." if cold else "Light layers should be enough."],
        "concierge": ["I'd suggest tucking a compact umbrella into your bag before heading out." if wet else
                      "It's a lovely day for the rooftop terrace or a stroll along the river.",
                      "Our lobby has spare scarves if the chill surprises you." if cold else
                      "Sunglasses and comfortable shoes are all you'll need."],
    }[persona]
    return rng.choice(pool)


def make_conversation(rng: random.Random, i: int, kind: str, persona: str) -> dict:
    city, day = rng.choice(CITIES), rng.choice(DAYS)
    system = {"role": "system", "content": PERSONAS[persona]}
    if kind == "off_topic":
        question, answer = rng.choice(OFF_TOPIC)
        return {"id": f"conv-{i:04d}", "messages": [system, {"role": "user", "content": question},
                                                   {"role": "assistant", "content": answer}],
                "tags": {"persona": persona, "topic": "off_topic", "source": "demo"}}
    topic = rng.choice(["weather", "weather", "weather", "flights", "hotels"])
    call_id = f"call_{i:04d}"
    if topic == "weather":
        w = {"city": city, "day": day, "condition": rng.choice(CONDITIONS), "temp_c": rng.randint(-5, 34),
             "precip_pct": rng.choice(range(0, 101, 5)), "wind_kph": rng.randint(2, 45)}
        question = rng.choice([f"What's the weather in {city} {day}?", f"Should I pack an umbrella for {city} {day}?",
                               f"How cold will it be in {city} {day}?", f"Is {day} a good day for a walk in {city}?"])
        call = {"name": "get_weather", "arguments": json.dumps({"city": city, "day": DAY_ARGUMENT[day]})}
        result = w
        facts = weather_facts(rng, city, day, w)
        tip = advice(rng, w, persona)
        wrong = f"{city} will be sunny and {w['temp_c'] + rng.randint(12, 20)}°C {day}, perfect beach weather."
    elif topic == "flights":
        dest = rng.choice([c for c in CITIES if c != city])
        flights = [{"airline": rng.choice(AIRLINES), "depart": f"{rng.randint(6, 21):02d}:{rng.choice(['05', '20', '45'])}",
                    "price_usd": rng.randint(90, 900)} for _ in range(3)]
        cheapest = min(flights, key=lambda f: f["price_usd"])
        question = f"Find me a flight from {city} to {dest} {day}."
        call = {"name": "find_flights",
                "arguments": json.dumps({"origin": city, "destination": dest, "day": DAY_ARGUMENT[day]})}
        result = {"flights": flights}
        facts = (f"The cheapest option from {city} to {dest} {day} is {cheapest['airline']} at {cheapest['depart']} "
                 f"for ${cheapest['price_usd']}; I found {len(flights)} flights in all.")
        tip = rng.choice(["Booking soon usually keeps the fare from climbing.", "Morning departures tend to run on time.",
                          "Check the baggage allowance before you pay."])
        wrong = f"There are no flights from {city} to {dest} at all, so you should take the train."
    else:
        hotels = [{"name": h, "price_per_night": rng.randint(60, 400), "rating": round(rng.uniform(3.0, 4.9), 1)}
                  for h in rng.sample(HOTELS, 3)]
        best = max(hotels, key=lambda h: h["rating"])
        question = f"Where should I stay in {city} {day}?"
        budget = max(h["price_per_night"] for h in hotels)  # the user's budget: every hotel shown fits it
        call = {"name": "find_hotels", "arguments": json.dumps({"city": city, "max_price_usd": budget})}
        result = {"hotels": hotels}
        facts = (f"{best['name']} in {city} has the best rating ({best['rating']}) at ${best['price_per_night']} a night; "
                 f"{len(hotels)} hotels have rooms {day}.")
        tip = rng.choice(["Ask for a room away from the street for a quieter night.",
                          "Breakfast is often cheaper when booked with the room.", "Late check-out is worth asking for."])
        wrong = f"Every hotel in {city} is fully booked {day}."
    if kind == "templated":
        stock = rng.choice(list(STOCK))
        phrase = STOCK[stock].format(city=city)
        answer = f"{facts} {phrase}" if stock == "hope" else f"{phrase} {facts}"
    elif kind == "low_quality":
        answer = rng.choice([wrong, "I'm not sure. You could check online.", f"{city} is a city. Weather happens there."])
    else:  # varied
        opener = rng.choice(["", "Good news: ", "Right, ", "Let me see. ", "Ah, ", "Short answer: ", "So, "])
        answer = f"{opener}{facts} {tip}".strip()
    messages = [system, {"role": "user", "content": question},
                {"role": "assistant", "content": None,
                 "tool_calls": [{"id": call_id, "type": "function", "function": call}]},
                {"role": "tool", "tool_call_id": call_id, "content": json.dumps(result)},
                {"role": "assistant", "content": answer}]
    tags = {"persona": persona, "topic": topic, "source": "demo", "kind": kind}
    return {"id": f"conv-{i:04d}", "messages": messages, "tags": tags}


STYLE = {
    "twain": ["The coldest winter I ever spent was a summer in San Francisco, or so the story goes.",
              "If you don't like the weather here, wait a few minutes; it is working on something new.",
              "The sky had the settled look of a thing that has made up its mind and will not be argued with.",
              "Rain came down with the enthusiasm of a preacher who has found a fresh sinner."],
    "franklin": ["An umbrella bought in sunshine is cheaper than a coat ruined in the rain.",
                 "He that rises with the sun has the whole day's weather for his errands.",
                 "Plan the journey by the almanac and the purse, and neither will betray you.",
                 "A cool morning is the thrifty traveller's friend: walk then, and save the cab."],
    "neutral": ["Tomorrow: 14°C, cloudy, light wind from the west.", "Rain is likely after 3 pm; carry a jacket.",
                "Three flights match; the earliest leaves at 07:10.", "Two hotels have rooms under $150 a night."],
    "concierge": ["Good morning! It's crisp outside, so I've set a warm scarf by the door for you.",
                  "The terrace is lovely at sunset tonight; shall I reserve a table?",
                  "A little drizzle is on the way, but our umbrellas are yours to borrow.",
                  "Your taxi to the airport can be waiting at seven, well ahead of the traffic."],
}


def build(n: int, seed: int) -> tuple[list[dict], list[dict]]:
    rng = random.Random(seed)
    kinds = ["templated"] * 50 + ["varied"] * 34 + ["low_quality"] * 8 + ["off_topic"] * 8
    records = []
    for i in range(n):
        records.append(make_conversation(rng, i, rng.choice(kinds), rng.choice(list(PERSONAS))))
    # expect hints: every off-topic record; on-topic from good answers; edge from the low-quality ones.
    on = [r for r in records if r["tags"].get("kind") in ("varied", "templated")]
    for r in records:
        if r["tags"]["topic"] == "off_topic":
            r["expect"] = "off_topic"
    for r in rng.sample(on, 70):
        r["expect"] = "on_topic"
    for r in [r for r in records if r["tags"].get("kind") == "low_quality"]:
        r["expect"] = "edge"
    style = [{"persona": p, "text": t} for p, texts in STYLE.items() for t in texts]
    return records, style


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    ap.add_argument("--n", type=int, default=640)
    ap.add_argument("--seed", type=int, default=2026)
    args = ap.parse_args()
    records, style = build(args.n, args.seed)
    from distillery.records import write_records

    write_records(args.out / "corpus.jsonl", records)
    write_records(args.out / "style.jsonl", style)
    print(f"wrote {len(records)} conversations and {len(style)} style examples to {args.out}")


if __name__ == "__main__":
    main()
