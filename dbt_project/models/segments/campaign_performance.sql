{#
    Campaign results per day and segment, with lift measured on our own sales: members who
    were not held out against the segment's holdout, both from the membership snapshot at
    launch (or the earliest snapshot when the segment was first built after the launch).
    A randomised experiment on the CRM list (split_salt given) compares instead the persons its
    split reached against the experiment's control (docs/measurement.md).
#}
with

campaigns as (

    select * from {{ ref('stg_campaigns__results') }}

),

history as (

    select * from {{ ref('segment_membership_history') }}

),

crm_records as (

    select
        source_key as crm_customer_id,
        person_id
    from {{ ref('identity_map') }}
    where source_system not in ('pos', 'web') and person_id is not null

),

purchase_days as (

    select
        person_id,
        activity_date
    from {{ ref('int_customer_days_aggregated') }}
    where purchases > 0

),

launches as (

    select
        campaign_id,
        segment_id,
        coalesce(min(launched_on), min(date)) as launched_on,
        max(split_salt) as split_salt,
        max(arm_from) as arm_from,
        max(arm_to) as arm_to
    from campaigns
    group by campaign_id, segment_id

),

experiment_arms as (

    select
        campaign_id,
        segment_id,
        launched_on,
        split_salt,
        arm_from,
        arm_to
    from launches
    where split_salt is not null and arm_from is not null and arm_to is not null

),

experiment_salts as (

    select distinct split_salt
    from experiment_arms

),

first_records as (

    -- the list deduplicated to one record per person: the smallest crm_customer_id
    select
        person_id,
        min(crm_customer_id) as crm_customer_id
    from crm_records
    group by person_id

),

record_buckets as (

    -- the public split: first 32 bits of sha256(salt|crm_customer_id) over 2^32
    select
        experiment_salts.split_salt,
        first_records.person_id,
        cast(
            cast(
                '0x' || left(
                    sha256(experiment_salts.split_salt || '|' || first_records.crm_customer_id), 8
                ) as ubigint
            ) as double
        ) / 4294967296.0 as split_bucket
    from experiment_salts
    cross join first_records

),

person_arms as (

    select
        experiment_arms.campaign_id,
        experiment_arms.segment_id,
        experiment_arms.split_salt,
        record_buckets.person_id,
        record_buckets.split_bucket >= experiment_arms.arm_from
        and record_buckets.split_bucket < experiment_arms.arm_to as is_reached
    from experiment_arms
    inner join record_buckets on experiment_arms.split_salt = record_buckets.split_salt

),

split_controls as (

    -- on the list and reached by no campaign of the experiment
    select
        split_salt,
        person_id
    from person_arms
    group by split_salt, person_id
    having not bool_or(is_reached)

),

snapshots as (

    select distinct
        segment_id,
        as_of
    from history

),

cohort_dates as (

    select
        launches.campaign_id,
        launches.segment_id,
        launches.launched_on,
        coalesce(
            max(case when snapshots.as_of <= launches.launched_on then snapshots.as_of end),
            min(snapshots.as_of)
        ) as cohort_as_of
    from launches
    left join snapshots on launches.segment_id = snapshots.segment_id
    where launches.split_salt is null or launches.arm_from is null or launches.arm_to is null
    group by launches.campaign_id, launches.segment_id, launches.launched_on

    union all

    select
        campaign_id,
        segment_id,
        launched_on,
        null as cohort_as_of
    from experiment_arms

),

cohort as (

    select
        cohort_dates.campaign_id,
        cohort_dates.segment_id,
        cohort_dates.launched_on,
        history.person_id,
        history.is_holdout
    from cohort_dates
    inner join history
        on
            cohort_dates.segment_id = history.segment_id
            and cohort_dates.cohort_as_of = history.as_of

    union all

    select
        person_arms.campaign_id,
        person_arms.segment_id,
        experiment_arms.launched_on,
        person_arms.person_id,
        false as is_holdout
    from person_arms
    inner join experiment_arms
        on
            person_arms.campaign_id = experiment_arms.campaign_id
            and person_arms.segment_id = experiment_arms.segment_id
    where person_arms.is_reached

    union all

    select
        experiment_arms.campaign_id,
        experiment_arms.segment_id,
        experiment_arms.launched_on,
        split_controls.person_id,
        true as is_holdout
    from experiment_arms
    inner join split_controls on experiment_arms.split_salt = split_controls.split_salt

),

cohort_sizes as (

    select
        campaign_id,
        segment_id,
        sum(case when not is_holdout then 1 else 0 end) as members,
        sum(case when is_holdout then 1 else 0 end) as holdout_members
    from cohort
    group by campaign_id, segment_id

),

first_purchases as (

    select
        cohort.campaign_id,
        cohort.segment_id,
        cohort.is_holdout,
        min(purchase_days.activity_date) as first_purchase_date
    from cohort
    inner join purchase_days
        on
            cohort.person_id = purchase_days.person_id
            and cohort.launched_on <= purchase_days.activity_date
    group by cohort.campaign_id, cohort.segment_id, cohort.person_id, cohort.is_holdout

),

buyers_by_day as (

    select
        campaigns.campaign_id,
        campaigns.segment_id,
        campaigns.date,
        sum(case when not first_purchases.is_holdout then 1 else 0 end) as member_buyers,
        sum(case when first_purchases.is_holdout then 1 else 0 end) as holdout_buyers
    from campaigns
    inner join first_purchases
        on
            campaigns.campaign_id = first_purchases.campaign_id
            and campaigns.segment_id = first_purchases.segment_id
            and campaigns.date >= first_purchases.first_purchase_date
    group by campaigns.campaign_id, campaigns.segment_id, campaigns.date

),

measured as (

    select
        campaigns.campaign_id,
        campaigns.segment_id,
        campaigns.date,
        campaigns.platform,
        cohort_dates.launched_on,
        cohort_dates.cohort_as_of,
        campaigns.split_salt,
        campaigns.arm_from,
        campaigns.arm_to,
        campaigns.impressions,
        campaigns.clicks,
        campaigns.spend,
        campaigns.conversions,
        campaigns.conversion_value,
        cast(coalesce(cohort_sizes.members, 0) as bigint) as members,
        cast(coalesce(cohort_sizes.holdout_members, 0) as bigint) as holdout_members,
        cast(coalesce(buyers_by_day.member_buyers, 0) as bigint) as member_buyers,
        cast(coalesce(buyers_by_day.holdout_buyers, 0) as bigint) as holdout_buyers
    from campaigns
    left join cohort_dates
        on
            campaigns.campaign_id = cohort_dates.campaign_id
            and campaigns.segment_id = cohort_dates.segment_id
    left join cohort_sizes
        on
            campaigns.campaign_id = cohort_sizes.campaign_id
            and campaigns.segment_id = cohort_sizes.segment_id
    left join buyers_by_day
        on
            campaigns.campaign_id = buyers_by_day.campaign_id
            and campaigns.segment_id = buyers_by_day.segment_id
            and campaigns.date = buyers_by_day.date

),

final as (

    select
        campaign_id,
        segment_id,
        date,
        platform,
        launched_on,
        cohort_as_of,
        cohort_as_of > launched_on as cohort_after_launch,
        split_salt,
        arm_from,
        arm_to,
        impressions,
        clicks,
        spend,
        conversions,
        conversion_value,
        cast(clicks as double) / nullif(impressions, 0) as ctr,
        spend / nullif(conversions, 0) as cpa,
        conversion_value / nullif(spend, 0) as roas,
        members,
        holdout_members,
        member_buyers,
        holdout_buyers,
        cast(member_buyers as double) / nullif(members, 0) as member_conversion_rate,
        cast(holdout_buyers as double) / nullif(holdout_members, 0) as holdout_conversion_rate,
        (cast(member_buyers as double) / nullif(members, 0))
        / nullif(cast(holdout_buyers as double) / nullif(holdout_members, 0), 0)
        - 1 as lift
    from measured

)

select * from final
