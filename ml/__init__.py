"""Scores and segments over the warehouse: RFM, behavioural clusters, purchase propensity and
segments declared as code. Pure Python over a DuckDB connection; never imports dagster."""

from ml.identity_eval import evaluate_identity_map
from ml.matching import match_records, write_identity_parameters, write_overrides
from ml.scoring import score_customers
from ml.segments import SEGMENTS, SegmentDefinition, build_segments

__all__ = [
    "SEGMENTS",
    "SegmentDefinition",
    "build_segments",
    "evaluate_identity_map",
    "match_records",
    "score_customers",
    "write_identity_parameters",
    "write_overrides",
]
