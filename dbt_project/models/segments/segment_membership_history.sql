{{ config(materialized='view') }}
{#
    Membership of the published segments as of each run date: one row per (segment_id,
    person_id, as_of) from int_segment_memberships_historized, only for runs on which the
    segment was published (min_size met): a segment too small to publish is served nowhere.
    Membership as of any date D: the rows of the latest run date on or before D
    (marts.segment_runs).
#}
select
    segment_id,
    person_id,
    as_of,
    entered_on,
    is_holdout
from {{ ref('int_segment_memberships_historized') }}
where published
