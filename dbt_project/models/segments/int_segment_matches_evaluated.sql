{{ config(schema='intermediate') }}
{#
    Every person whose attributes and events meet a segment's condition, before consent,
    exclusive groups and holdouts: (person_id, segment_id, score, sort_key). The SQL is compiled
    from the audience files (macro audience_sql, warehouse/audiences.py); sort_key orders the
    members best first (the score, negated for `rank_by: {order: asc}`).
#}
{{ audience_sql('matches') }}
