with

source as (

    select * from {{ source('raw', 'consent') }}

),

ranked as (

    -- a consent event id that was loaded again keeps its latest delivery
    select
        source.*,
        row_number() over (
            partition by trim(source.consent_event_id)
            order by
                source._loaded_at desc nulls last,
                source._file desc nulls last,
                source._row_number desc nulls last
        ) as delivery_rank
    from source

),

final as (

    select
        trim(ranked.consent_event_id) as consent_event_id,
        lower(trim(ranked.subject_type)) as subject_type,
        coalesce(nullif(trim(ranked.source_system), ''), 'crm') as source_system,
        identity_subject_node(ranked.subject_type, ranked.subject_id, ranked.source_system)
            as subject_node,
        lower(trim(ranked.purpose)) as purpose,
        lower(trim(ranked.status)) as status,
        ranked.event_at,
        nullif(trim(ranked.source), '') as source
    from ranked
    where ranked.delivery_rank = 1

)

select * from final
