"""Scores and segments over the warehouse: RFM, behavioural clusters, purchase propensity and
segments declared as code. Pure Python over a DuckDB connection; never imports dagster."""

from ml.scoring import score_customers
from ml.segments import SEGMENTS, SegmentDefinition, build_segments

__all__ = ["SEGMENTS", "SegmentDefinition", "build_segments", "score_customers"]
