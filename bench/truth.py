"""The generator's ground truth beside a warehouse: each warehouse person mapped to the true
person most of their source records belong to (as the identity tests map them)."""

from __future__ import annotations

from pathlib import Path

# CTEs `persons` (the truth's persons.csv) and `mapped` (person_id -> true_person_id); bound
# parameters $identity and $persons are the truth files (truth_params).
TRUTH_CTES = """
truth as (select * from read_csv($identity, all_varchar = true)),
persons as (select * from read_csv($persons, all_varchar = true)),
mapped as (
    select m.person_id, mode(t.true_person_id) as true_person_id
    from marts.identity_map as m join truth as t using (source_system, source_key)
    where m.person_id is not null
    group by m.person_id
)
"""


def truth_params(landing: Path) -> dict[str, str]:
    truth = Path(landing) / "_truth"
    return {"identity": str(truth / "identity.csv"), "persons": str(truth / "persons.csv")}
