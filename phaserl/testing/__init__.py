"""Tiny models and data made locally, for tests, the smoke recipe and benchmarks (no hub needed)."""
