"""great-expectations suites as code for every table of the pipeline, and a runner.

Row-level rules run in GX 1.x on a (sampled) pandas DataFrame read from DuckDB; set-wide rules
(key uniqueness, row counts, freshness, the consent gate) are exact SQL over the whole table.
"""

import os

# Closed network: GX must not phone home (the one environment write outside settings).
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

from expectations.results import ExpectationResult, ValidationOutcome  # noqa: E402
from expectations.runner import validate  # noqa: E402
from expectations.suites import SUITES, Rule, SuiteSpec  # noqa: E402

__all__ = [
    "SUITES",
    "ExpectationResult",
    "Rule",
    "SuiteSpec",
    "ValidationOutcome",
    "validate",
]
