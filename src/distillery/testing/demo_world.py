"""The demo's tool world: a SQLite database (as a SQL script) of weather, flights and hotels for the demo
corpus's cities, a diary the assistant can write to and read back, and the tools over it (OpenAI format
plus the SQL that implements each). Seeded: the same files each time.

    python -m distillery.testing.demo_world --out data/raw     # world.sql, tools.json
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

from distillery.testing.demo_corpus import AIRLINES, CITIES, CONDITIONS, HOTELS

DAYS = ["today", "tomorrow", "friday", "saturday", "sunday", "monday"]


def _q(value) -> str:
    return "'" + str(value).replace("'", "''") + "'" if isinstance(value, str) else str(value)


def world_sql(seed: int = 7) -> str:
    rng = random.Random(seed)
    lines = ["-- The demo's tool database (distillery.testing.demo_world): generated, seeded.",
             "CREATE TABLE weather (city TEXT, day TEXT, condition TEXT, temp_c INTEGER, precip_mm REAL, wind_kph INTEGER);",
             "CREATE TABLE flights (origin TEXT, destination TEXT, day TEXT, airline TEXT, depart TEXT, price_usd INTEGER);",
             "CREATE TABLE hotels (city TEXT, name TEXT, price_usd INTEGER, rating REAL);",
             "CREATE TABLE diary (id INTEGER PRIMARY KEY, entry TEXT NOT NULL);"]
    for city in CITIES:
        for day in DAYS:
            cond = rng.choice(CONDITIONS)
            rain = round(rng.uniform(2, 30), 1) if "rain" in cond or "storm" in cond else 0.0
            row = (city, day, cond, rng.randint(-5, 34), rain, rng.randint(0, 60))
            lines.append(f"INSERT INTO weather VALUES ({', '.join(map(_q, row))});")
        for name in rng.sample(HOTELS, 3):
            lines.append(f"INSERT INTO hotels VALUES ({_q(city)}, {_q(name)}, {rng.randint(60, 420)}, "
                         f"{round(rng.uniform(3.0, 4.9), 1)});")
    for origin in CITIES:
        for destination in rng.sample([c for c in CITIES if c != origin], 4):
            for day in rng.sample(DAYS, 2):
                for airline in rng.sample(AIRLINES, 2):
                    depart = f"{rng.randint(5, 22):02d}:{rng.choice(['00', '15', '30', '45'])}"
                    row = (origin, destination, day, airline, depart, rng.randint(90, 900))
                    lines.append(f"INSERT INTO flights VALUES ({', '.join(map(_q, row))});")
    return "\n".join(lines) + "\n"


def _tool(name: str, description: str, properties: dict, sql: str, required: list[str] | None = None) -> dict:
    return {"type": "function",
            "function": {"name": name, "description": description,
                         "parameters": {"type": "object", "properties": properties,
                                        "required": list(properties) if required is None else required}},
            "sql": sql}


def tools() -> list[dict]:
    city = {"type": "string", "enum": CITIES}
    day = {"type": "string", "enum": DAYS}
    return [
        _tool("get_weather", "The forecast for a city on a day.", {"city": city, "day": day},
              "SELECT city, day, condition, temp_c, precip_mm, wind_kph FROM weather WHERE city = :city AND day = :day"),
        _tool("find_flights", "Flights between two cities on a day, cheapest first.",
              {"origin": city, "destination": city, "day": day},
              "SELECT airline, depart, price_usd FROM flights WHERE origin = :origin AND destination = :destination "
              "AND day = :day ORDER BY price_usd"),
        _tool("find_hotels", "Hotels in a city at or under a nightly price, best rated first.",
              {"city": city, "max_price_usd": {"type": "number"}},
              "SELECT name, price_usd, rating FROM hotels WHERE city = :city AND price_usd <= :max_price_usd "
              "ORDER BY rating DESC"),
        _tool("save_note", "Save a note to the user's travel diary, to read back later.",
              {"text": {"type": "string"}}, "INSERT INTO diary (entry) VALUES (:text)"),
        _tool("read_notes", "Read back the notes saved in the user's travel diary.", {},
              "SELECT id, entry FROM diary ORDER BY id"),
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("data/raw"))
    out = ap.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    (out / "world.sql").write_text(world_sql(), encoding="utf-8")
    (out / "tools.json").write_text(json.dumps(tools(), indent=2) + "\n", encoding="utf-8")
    print(f"demo_world: {out / 'world.sql'}, {out / 'tools.json'}")


if __name__ == "__main__":
    main()
