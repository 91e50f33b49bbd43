{#
    One row per segment declared in the audience files (MICROSEG_SEGMENTS_DIR), as validated and
    loaded by the audience-files asset: the defaults of the settings filled in where a file
    leaves min_size or holdout_share out. `definition` is the segment as written (JSON);
    `version` changes whenever it does.
#}
with

declared as (

    select * from {{ source('audiences', 'audience_segments') }}

),

final as (

    select
        segment_id,
        name,
        kind,
        description,
        definition,
        purpose,
        version,
        min_size,
        holdout_share,
        segment_group,
        priority,
        rank_by,
        rank_order,
        source_file,
        source_line,
        offer,
        message_template,
        template_variables,
        feed_priority,
        feed_channels
    from declared

)

select * from final
