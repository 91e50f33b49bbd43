with

source as (

    select * from {{ source('raw', 'privacy') }}

),

ranked as (

    select
        source.*,
        row_number() over (
            partition by trim(source.request_id)
            order by
                source._loaded_at desc nulls last,
                source._file desc nulls last,
                source._row_number desc nulls last
        ) as delivery_rank
    from source

),

final as (

    select
        trim(ranked.request_id) as request_id,
        lower(trim(ranked.request_type)) as request_type,
        lower(trim(ranked.subject_type)) as subject_type,
        coalesce(nullif(trim(ranked.source_system), ''), 'crm') as source_system,
        identity_subject_node(ranked.subject_type, ranked.subject_id, ranked.source_system)
            as subject_node,
        ranked.requested_at
    from ranked
    where ranked.delivery_rank = 1

)

select * from final
