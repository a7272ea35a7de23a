"""distillery: distil a large LLM (the oracle) into a small, cheap student, reproducibly."""
