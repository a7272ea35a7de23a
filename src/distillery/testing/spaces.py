"""The issue's reference parameter space for the planner's tests and bench: axes of 4, 6, 10, 3, 8 and 4
values (all pairs need at least 10 × 8 = 80 scenarios; PICT and a plain AETG greedy reach 80)."""

AXES = {
    "persona": {"ana": 0.4, "ben": 0.3, "cy": 0.2, "dee": 0.1},
    "topic": [f"topic{i}" for i in range(6)],
    "city": [f"city{i}" for i in range(10)],
    "complexity": ["people_pleasing", "misjudgment_over", "mixed_emotions"],
    "user_style": [f"style{i}" for i in range(8)],
    "outcome": {"failed": {"weight": 0.1, "range": [0.0, 0.3]}, "struggling": {"weight": 0.2, "range": [0.3, 0.5]},
                "authentic": {"weight": 0.4, "range": [0.5, 0.8]}, "excellent": {"weight": 0.3, "range": [0.8, 1.0]}},
}
