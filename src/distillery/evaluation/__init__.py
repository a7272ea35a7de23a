"""Evaluation of a student against the oracle: regression metrics and the deploy verdict."""
