{{
    config(
        materialized='incremental',
        incremental_strategy='append',
        full_refresh=false,
        pre_hook="{% if is_incremental() %}delete from {{ this }} where as_of = {{ as_of_date() }}{% endif %}"
    )
}}
{#
    One row per run date of the segment layer, whatever the runs found: "the previous run" of
    the history, the summary and the KPIs is the latest earlier row here, so a run in which no
    segment had a member still ends every spell. Membership as of a date D is that of the
    latest run date here on or before D (segment_membership_history).
#}
select
    {{ as_of_date() }} as as_of,
    (select count(*) from {{ ref('segment_definitions') }}) as segments
