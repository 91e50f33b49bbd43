"""Synthetic landing-zone generator with ground truth (no dagster import)."""

from synthetic.generator import GENERATOR_VERSION, generate

__all__ = ["GENERATOR_VERSION", "generate"]
