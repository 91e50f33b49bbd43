"""Synthetic landing-zone generator with ground truth (no dagster import)."""

from synthetic.generator import generate

__all__ = ["generate"]
