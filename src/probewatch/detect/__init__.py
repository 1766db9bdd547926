"""Detection: Sigma rules compiled to predicates over SigmaEvents (docs/detection.md)."""

from .model import LEVELS, SigmaEvent, at_least, level_rank, parse_level

__all__ = ["LEVELS", "SigmaEvent", "at_least", "level_rank", "parse_level"]
