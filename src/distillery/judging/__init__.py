"""Pairwise judging: read comparisons of two systems' answers (judged in both orders) and aggregate them.

The file format is documented in `aggregate`; `python -m distillery.judging summarize FILE` prints the table.
"""
from distillery.judging.aggregate import Comparison, bradley_terry, load_comparisons, summarize

__all__ = ["Comparison", "bradley_terry", "load_comparisons", "summarize"]
