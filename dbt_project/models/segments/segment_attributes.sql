{#
    One row per person: every attribute an audience file's `attribute` condition or `rank_by`
    may name. The golden record, the features, the scores and the lookalike scores, plus `age`
    (whole years at the as_of date, from the golden record's birth date) and the
    geo-demographics of the golden record's postcode from the enrichment source (null where it
    has no row for it). The serving snapshot drops the direct identifiers among these columns,
    as for every table.
#}
with

profiles as (

    select * from {{ ref('customer_profiles') }}

),

features as (

    select * from {{ ref('customer_features') }}

),

scores as (

    -- which model version scored a person is lineage, not an attribute
    select * exclude (propensity_model_version, cluster_model_version, clv_model_version)
    from {{ source('segments', 'customer_scores') }}

),

lookalikes as (

    select * from {{ source('segments', 'lookalike_scores') }}

),

postcodes as (

    select * from {{ ref('stg_enrichment__postcodes') }}

),

final as (

    select
        profiles.*,
        features.* exclude (person_id, as_of),  -- noqa: RF02
        scores.* exclude (person_id, as_of),  -- noqa: RF02
        lookalikes.seed_segment as lookalike_seed_segment,
        lookalikes.lookalike_score,
        lookalikes.lookalike_rank_pct,
        lookalikes.is_lookalike_seed,
        cast(
            date_part('year', age(
                cast({{ as_of_date() }} as timestamp),
                cast(profiles.date_of_birth as timestamp)
            )) as integer
        ) as age,
        postcodes.urbanicity,
        postcodes.median_household_income,
        postcodes.population_density,
        {{ as_of_date() }} as as_of
    from profiles
    left join features on profiles.person_id = features.person_id
    left join scores on profiles.person_id = scores.person_id
    left join lookalikes on profiles.person_id = lookalikes.person_id
    left join postcodes
        on
            profiles.country = postcodes.country
            and profiles.postcode = postcodes.postcode

)

select * from final  -- noqa: AM04
