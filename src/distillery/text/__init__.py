"""Text analysis: tokens and shingles, near-duplicates, diversity figures and template mining."""
