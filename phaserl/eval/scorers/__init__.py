"""Benchmark scorers: official-compatible where the official scorer is rule-based (see each module)."""
