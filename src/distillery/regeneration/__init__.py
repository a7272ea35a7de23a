"""Regeneration: rewriting templated answers in the persona's voice, tool calls untouched."""
