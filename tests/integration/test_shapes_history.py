"""Two sources without consent, twenty persons over one day, sixty days: each publishes.

The tests are in `shapes.py`.
"""

import pytest

from tests.integration.shapes import (  # noqa: F401 (collected here)
    shape_fixture,
    test_shape_maps_every_record_it_holds,
    test_shape_publishes_a_complete_snapshot,
    test_shape_records_what_it_could_not_train,
    test_shape_summary_names_each_absent_source,
)

pytestmark = pytest.mark.slow

shape_run = shape_fixture(["crm_and_pos_without_consent", "twenty_persons_one_day", "sixty_days"])
