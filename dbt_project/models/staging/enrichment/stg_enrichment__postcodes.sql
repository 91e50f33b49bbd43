with

source as (

    select * from {{ source('raw', 'enrichment') }}

),

keyed as (

    select
        upper(trim(source.country)) as country,
        {{ normalize_postcode('source.postcode', 'source.country') }} as postcode,
        lower(trim(source.urbanicity)) as urbanicity,
        source.median_household_income,
        source.population_density,
        -- `provider` is a DuckDB keyword, and the contract's column name
        nullif(trim(source.provider), '') as provider,  -- noqa: RF04
        source._loaded_at,
        source._file,
        source._row_number
    from source

),

ranked as (

    -- the latest delivery of a postcode wins: the latest load, then file, then the last row
    select
        keyed.*,
        row_number() over (
            partition by keyed.country, keyed.postcode
            order by
                keyed._loaded_at desc nulls last,
                keyed._file desc nulls last,
                keyed._row_number desc nulls last
        ) as delivery_rank
    from keyed
    where keyed.country != '' and keyed.postcode is not null

),

final as (

    select
        ranked.country,
        ranked.postcode,
        ranked.urbanicity,
        cast(ranked.median_household_income as double) as median_household_income,
        cast(ranked.population_density as double) as population_density,
        ranked.provider,
        ranked._loaded_at as loaded_at,
        ranked._file as source_file
    from ranked
    where ranked.delivery_rank = 1

)

select * from final
