{#
    Each data-subject request with the person(s) its subject resolves to through the identity
    graph; a subject the graph does not know gets one row with a null person_id.
#}
with

requests as (

    select * from {{ ref('stg_privacy__requests') }}

),

subjects as (

    select * from {{ ref('int_identity_subjects_resolved') }}

),

final as (

    select
        requests.request_id,
        requests.request_type,
        requests.subject_type,
        requests.subject_node,
        requests.requested_at,
        subjects.person_id
    from requests
    left join subjects on requests.subject_node = subjects.subject_node

)

select * from final
