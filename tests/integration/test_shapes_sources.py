"""Each source alone publishes. The tests are in `shapes.py`."""

import pytest

from tests.integration.shapes import (  # noqa: F401 (collected here)
    shape_fixture,
    test_shape_maps_every_record_it_holds,
    test_shape_publishes_a_complete_snapshot,
    test_shape_records_what_it_could_not_train,
    test_shape_summary_names_each_absent_source,
)

pytestmark = pytest.mark.slow

shape_run = shape_fixture(["crm_only", "pos_only", "web_only"])
