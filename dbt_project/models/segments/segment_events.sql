{{ config(materialized='view') }}
{#
    Every attributed event a segment condition can ask about, one row per web event or POS line
    up to the end of the as_of day: in-store lines are `purchase` (or `return`) events of channel
    `store` whose session is their transaction; web events keep their type, device and session,
    with channel `app` (device app), `email` (email opens and clicks) or `web`. `event_key` is
    what a condition counts once: a POS transaction however many of its lines match, a web order
    however many purchase events carry it, else the web event. Pages lose their query string
    and fragment (they may carry an email address or a token). A view: the segment query reads
    only the columns and event types it needs; the serving snapshot gets it as a table with
    event_key and session_id keyed (warehouse/publish.py SOURCE_KEY_COLUMNS), as source keys.
#}
with

web_events as (

    select * from {{ ref('int_web_events_attributed') }}

),

pos_lines as (

    select * from {{ ref('int_pos_lines_attributed') }}

),

web as (

    select
        person_id,
        case
            when event_type = 'purchase' and order_id is not null then 'order:' || order_id
            else event_id
        end as event_key,
        event_at,
        event_type,
        case
            when event_type in ('email_open', 'email_click') then 'email'
            when device_type = 'app' then 'app'
            else 'web'
        end as channel,
        device_type as device,
        session_id,
        sku,
        product_category as category,
        nullif(split_part(split_part(page_url, '?', 1), '#', 1), '') as page,
        revenue as amount
    from web_events

),

store as (

    select
        person_id,
        'pos:' || transaction_id as event_key,
        transacted_at as event_at,
        case when is_return then 'return' else 'purchase' end as event_type,
        'store' as channel,
        cast(null as varchar) as device,
        'pos:' || transaction_id as session_id,
        sku,
        product_category as category,
        cast(null as varchar) as page,
        line_amount as amount
    from pos_lines

),

final as (

    select * from web
    union all
    select * from store

)

select * from final
