"""Data: the canonical Example, source adapters, prompt rendering and seeded mixtures."""

from phaserl.data.schema import ANSWER_TYPES, VIEWS, DataError, Example

__all__ = ["ANSWER_TYPES", "VIEWS", "DataError", "Example"]
