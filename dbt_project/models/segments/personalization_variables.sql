{#
    The values a segment's message template may use, one row per person as of the run: every
    column here (person_id aside) is a template variable an audience file's `personalization`
    may name (warehouse/audiences.py reads them from this model's yml). Value tiers follow
    expected_spend_365d among persons who have one: gold the top 10%, silver the next 20%,
    bronze the rest; the discount falls as value rises (macro discount_for_tier).
#}
with

features as (

    select
        person_id,
        top_category_365d
    from {{ ref('customer_features') }}

),

scores as (

    select
        person_id,
        expected_spend_365d
    from {{ source('segments', 'customer_scores') }}

),

product_views as (

    select
        person_id,
        arg_max(sku, event_at) as last_viewed_sku,
        arg_max(product_category, event_at) as last_viewed_category
    from {{ ref('int_web_events_attributed') }}
    where
        event_type = 'product_view'
        and sku is not null
        and event_at < {{ as_of_end() }}
    group by person_id

),

value_ranks as (

    select
        person_id,
        percent_rank() over (order by expected_spend_365d, person_id) as value_rank
    from scores
    where expected_spend_365d is not null

),

tiers as (

    select
        person_id,
        case
            when value_rank >= 0.9 then 'gold'
            when value_rank >= 0.7 then 'silver'
            else 'bronze'
        end as loyalty_tier
    from value_ranks

),

final as (

    select
        features.person_id,
        coalesce(features.top_category_365d, product_views.last_viewed_category)
            as first_category_of_interest,
        product_views.last_viewed_sku as last_viewed_product,
        tiers.loyalty_tier,
        cast({{ discount_for_tier('tiers.loyalty_tier') }} as double) as discount_level
    from features
    left join product_views on features.person_id = product_views.person_id
    left join tiers on features.person_id = tiers.person_id

)

select * from final
