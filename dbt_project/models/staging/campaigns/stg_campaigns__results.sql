with

source as (

    select * from {{ source('raw', 'campaigns') }}

),

keyed as (

    select
        cast(source.date as date) as date,
        lower(trim(source.platform)) as platform,
        trim(source.campaign_id) as campaign_id,
        trim(source.segment_id) as segment_id,
        source.launched_on,
        source.impressions,
        source.clicks,
        source.spend,
        source.conversions,
        source.conversion_value,
        -- the randomised split of an experiment: optional columns the raw spec keeps in _extra
        nullif(trim(json_extract_string(source._extra, '$.split_salt')), '') as split_salt,
        try_cast(json_extract_string(source._extra, '$.arm_from') as double) as arm_from,
        try_cast(json_extract_string(source._extra, '$.arm_to') as double) as arm_to,
        source._loaded_at,
        source._file,
        source._row_number
    from source

),

ranked as (

    -- a day re-delivered by the platform replaces the earlier figures
    select
        keyed.*,
        row_number() over (
            partition by keyed.date, keyed.platform, keyed.campaign_id, keyed.segment_id
            order by
                keyed._loaded_at desc nulls last,
                keyed._file desc nulls last,
                keyed._row_number desc nulls last
        ) as delivery_rank
    from keyed

),

final as (

    select
        {{ dbt.concat([
            "cast(ranked.date as varchar)", "'|'", "ranked.platform", "'|'",
            "ranked.campaign_id", "'|'", "ranked.segment_id"
        ]) }} as campaign_result_id,
        ranked.date,
        ranked.platform,
        ranked.campaign_id,
        ranked.segment_id,
        ranked.launched_on,
        cast(ranked.impressions as bigint) as impressions,
        cast(ranked.clicks as bigint) as clicks,
        cast(ranked.spend as double) as spend,
        cast(ranked.conversions as bigint) as conversions,
        cast(ranked.conversion_value as double) as conversion_value,
        ranked.split_salt,
        ranked.arm_from,
        ranked.arm_to
    from ranked
    where ranked.delivery_rank = 1

)

select * from final
