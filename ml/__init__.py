"""Scores and segments over the warehouse: RFM, behavioural clusters, purchase propensity and
the lift statistics of segments. Pure Python over a DuckDB connection; never imports dagster."""

from ml.identity_eval import evaluate_identity_map
from ml.matching import match_records, write_identity_parameters, write_overrides
from ml.scoring import score_customers

__all__ = [
    "evaluate_identity_map",
    "match_records",
    "score_customers",
    "write_identity_parameters",
    "write_overrides",
]
