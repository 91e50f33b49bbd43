with

nodes as (

    select * from {{ ref('int_identity_nodes_resolved') }}

),

records as (

    select * from {{ ref('int_identity_records_collected') }}

),

subjects as (

    select * from {{ ref('int_identity_subjects_resolved') }}

),

crm_customers as (

    select * from {{ ref('stg_crm__customers') }}

),

consent_events as (

    select * from {{ ref('stg_consent__events') }}

),

persons as (

    -- node counts and activity in one pass: every person holds at least one record
    select
        nodes.person_id,
        count(case when nodes.node_type = 'crm' then 1 end) as n_crm_records,
        count(case when nodes.node_type = 'pos' then 1 end) as n_pos_transactions,
        count(case when nodes.node_type = 'web' then 1 end) as n_web_devices,
        count(case when nodes.node_type in ('crm', 'email', 'phone', 'card') then 1 end) > 0
            as is_known,
        min(records.first_seen_at) as first_seen_at,
        max(records.last_seen_at) as last_seen_at
    from nodes
    left join records
        on nodes.node_id = records.record_node
    group by nodes.person_id

),

person_crm_records as (

    -- survivorship inputs: recency (latest updated_at, then created_at, then the record node),
    -- source priority, and how often each person's records repeat a value; the windows run on
    -- these narrow rows, the attributes are joined after
    select
        nodes.person_id,
        crm_customers.record_node,
        row_number() over (
            partition by nodes.person_id
            order by
                crm_customers.updated_at nulls first,
                crm_customers.created_at nulls first,
                crm_customers.record_node
        ) as recency_order,
        {{ identity_source_priority('crm_customers.source_system') }} as source_priority,
        count(crm_customers.first_name) over (
            partition by nodes.person_id, lower(crm_customers.first_name)
        ) as first_name_frequency,
        count(crm_customers.last_name) over (
            partition by nodes.person_id, lower(crm_customers.last_name)
        ) as last_name_frequency,
        count(crm_customers.date_of_birth) over (
            partition by nodes.person_id, crm_customers.date_of_birth
        ) as date_of_birth_frequency,
        count(crm_customers.gender) over (
            partition by nodes.person_id, crm_customers.gender
        ) as gender_frequency,
        crm_customers.street_address is not null or crm_customers.postcode is not null
            as has_address
    from crm_customers
    inner join nodes
        on crm_customers.record_node = nodes.node_id

),

ranked_records as (

    select
        person_crm_records.*,
        crm_customers.first_name,
        crm_customers.last_name,
        crm_customers.email,
        crm_customers.phone_e164,
        crm_customers.email_key,
        crm_customers.phone_key,
        crm_customers.street_address,
        crm_customers.city,
        crm_customers.postcode,
        crm_customers.state,
        crm_customers.country,
        crm_customers.date_of_birth,
        crm_customers.gender,
        crm_customers.household_income,
        crm_customers.occupation,
        -- contact data: the preferred source first, then the most recent record
        person_crm_records.source_priority * 1000000 + person_crm_records.recency_order
            as contact_order,
        -- the address as one block, from the most recent record that has one
        case when person_crm_records.has_address then person_crm_records.recency_order end
            as address_order
    from person_crm_records
    inner join crm_customers
        on person_crm_records.record_node = crm_customers.record_node

),

golden_attributes as (

    select
        person_id,
        {{ most_frequent_non_null('first_name', 'first_name_frequency', 'recency_order') }}
            as first_name,
        {{ most_frequent_non_null('last_name', 'last_name_frequency', 'recency_order') }}
            as last_name,
        {{ latest_non_null('email', 'contact_order') }} as email,
        {{ latest_non_null('phone_e164', 'contact_order') }} as phone,
        {{ latest_non_null('email_key', 'contact_order') }} as email_key,
        {{ latest_non_null('phone_key', 'contact_order') }} as phone_key,
        arg_max(street_address, address_order) filter (where has_address) as street_address,
        arg_max(city, address_order) filter (where has_address) as city,
        arg_max(postcode, address_order) filter (where has_address) as postcode,
        arg_max(state, address_order) filter (where has_address) as state,
        arg_max(country, address_order) filter (where has_address) as country,
        {{ most_frequent_non_null('date_of_birth', 'date_of_birth_frequency', 'recency_order') }}
            as date_of_birth,
        {{ most_frequent_non_null('gender', 'gender_frequency', 'recency_order') }} as gender,
        {{ latest_non_null('household_income', 'recency_order') }} as household_income,
        {{ latest_non_null('occupation', 'recency_order') }} as occupation
    from ranked_records
    group by person_id

),

latest_consent_events as (

    -- the latest event (by event_at, then consent_event_id) per identity node and purpose, up to
    -- the end of the as_of day; no filter on subject_node (DuckDB would push it into the staging
    -- view and compute every subject node twice): the join to subjects drops the null ones
    select
        consent_events.subject_node,
        consent_events.purpose,
        arg_max_null(
            consent_events.status,
            struct_pack(event_at := consent_events.event_at, id := consent_events.consent_event_id)
        ) as status
    from consent_events
    where consent_events.event_at < {{ as_of_end() }}
    group by consent_events.subject_node, consent_events.purpose

),

person_consent_statuses as (

    -- the most restrictive wins: one denial or revocation outweighs any grant
    select
        subjects.person_id,
        latest_consent_events.purpose,
        count(case when latest_consent_events.status = 'granted' then 1 end) > 0
        and count(case when latest_consent_events.status in ('denied', 'revoked') then 1 end) = 0
            as has_consent
    from latest_consent_events
    inner join subjects
        on latest_consent_events.subject_node = subjects.subject_node
    group by subjects.person_id, latest_consent_events.purpose

),

person_consents as (

    select
        person_id,
        bool_or(purpose = 'analytics' and has_consent) as consent_analytics,
        bool_or(purpose = 'personalization' and has_consent) as consent_personalization,
        bool_or(purpose = 'ad_targeting' and has_consent) as consent_ad_targeting,
        bool_or(purpose = 'third_party_sharing' and has_consent) as consent_third_party_sharing
    from person_consent_statuses
    group by person_id

),

final as (

    select
        persons.person_id,
        golden_attributes.first_name,
        golden_attributes.last_name,
        golden_attributes.email,
        golden_attributes.phone,
        golden_attributes.email_key,
        golden_attributes.phone_key,
        golden_attributes.street_address,
        golden_attributes.city,
        golden_attributes.postcode,
        golden_attributes.state,
        golden_attributes.country,
        golden_attributes.date_of_birth,
        golden_attributes.gender,
        golden_attributes.household_income,
        golden_attributes.occupation,
        persons.n_crm_records,
        persons.n_pos_transactions,
        persons.n_web_devices,
        persons.first_seen_at,
        persons.last_seen_at,
        persons.is_known,
        coalesce(person_consents.consent_analytics, false) as consent_analytics,
        coalesce(person_consents.consent_personalization, false) as consent_personalization,
        coalesce(person_consents.consent_ad_targeting, false) as consent_ad_targeting,
        coalesce(person_consents.consent_third_party_sharing, false)
            as consent_third_party_sharing
    from persons
    left join golden_attributes
        on persons.person_id = golden_attributes.person_id
    left join person_consents
        on persons.person_id = person_consents.person_id

)

select * from final
