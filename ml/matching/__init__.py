"""Probabilistic record matching of CRM records with Splink on the warehouse's DuckDB connection.

`match_records` reads `staging.stg_crm__customers`, normalises names, birth dates, addresses and
contact data into a scratch schema, trains (or reuses) an unsupervised Splink model (u by random
sampling, m by EM, term-frequency adjustments on names and postcode), predicts pairs above a
probability threshold and writes them with their evidence to `intermediate.identity_match_edges`.
The trained model is versioned in `ml.model_runs` (model_name `identity_matching`) and reused
until the settings change or a retrain is asked for. Pure Python: never imports dagster.

One module per job: `inputs` (the normalised input table), `model` (comparisons, settings and
their hash, blocking rules, the linker), `em_floor` (the Splink 5.0.0 EM workaround), `training`
(EM sessions, fallback, stored models), `edges` (scored pairs and their evidence), `run` (one
matching run), `overrides` (overrides CSV and identity parameters), `graph` (clustering under
the guards). This package exports the names its callers use.
"""

from __future__ import annotations

from ml.matching.edges import EDGES_TABLE, create_edges_table
from ml.matching.graph import constrained_components
from ml.matching.inputs import SCRATCH_SCHEMA, prepare_input
from ml.matching.model import (
    COMPARISON_COLUMNS,
    PREDICTION_BLOCKING_CANDIDATES,
    PREDICTION_BLOCKING_RULES,
    PRIOR_RULES,
    PRIOR_RULES_RECALL,
    TERM_FREQUENCY_MINIMUM_U,
    TRAINING_BLOCKING_RULES,
    blocking_rule_sql,
    choose_blocking_rules,
    comparisons,
    rule_comparisons,
    settings_dict,
    settings_hash,
)
from ml.matching.overrides import write_identity_parameters, write_overrides
from ml.matching.run import match_records
from ml.matching.training import MODEL_NAME, append_model_run, load_stored_model, train_model

__all__ = [
    "COMPARISON_COLUMNS",
    "EDGES_TABLE",
    "MODEL_NAME",
    "PREDICTION_BLOCKING_CANDIDATES",
    "PREDICTION_BLOCKING_RULES",
    "PRIOR_RULES",
    "PRIOR_RULES_RECALL",
    "SCRATCH_SCHEMA",
    "TERM_FREQUENCY_MINIMUM_U",
    "TRAINING_BLOCKING_RULES",
    "append_model_run",
    "blocking_rule_sql",
    "choose_blocking_rules",
    "comparisons",
    "constrained_components",
    "create_edges_table",
    "load_stored_model",
    "match_records",
    "prepare_input",
    "rule_comparisons",
    "settings_dict",
    "settings_hash",
    "train_model",
    "write_identity_parameters",
    "write_overrides",
]
