"""Randomised campaigns sent to the CRM list, with a true effect on purchases (docs/measurement.md).

Each experiment splits the CRM list, one record per person (the smallest crm_customer_id), by a
public salt: the bucket is the first 32 bits of sha256("<salt>|<crm_customer_id>") over 2^32, so
the pipeline recomputes the split from the results file without any secret. A campaign of the
experiment reached the persons whose bucket lies in its [arm_from, arm_to); the experiment's
control is everyone on the list in none of its arms. A reached person's purchase rate after
launch is multiplied by the campaign's true `uplift` (1 = no effect), by adding Poisson purchases
at rate (uplift - 1) x the person's own rate, so the rest of the simulation is untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import pyarrow as pa

from synthetic._activity import Activity
from synthetic._population import Population

CRM_LIST_SEGMENT = "crm_customers"
RUN_DAYS = 28  # campaigns run over the last four weeks of the window


@dataclass(frozen=True)
class Experiment:
    campaign_id: str
    platform: str
    salt: str
    arm_from: float
    arm_to: float
    uplift: float  # true multiplier of the purchase rate after launch


# Two lift tests (one works, one does not) and two creative A/B tests (a real difference, none).
EXPERIMENTS = [
    Experiment("cmp_email_spring_sale", "email", "exp-spring-sale", 0.5, 1.0, 2.0),
    Experiment("cmp_email_newsletter", "email", "exp-newsletter", 0.5, 1.0, 1.0),
    Experiment("cmp_meta_creative_a", "meta", "exp-meta-creative", 0.2, 0.6, 1.8),
    Experiment("cmp_meta_creative_b", "meta", "exp-meta-creative", 0.6, 1.0, 1.0),
    Experiment("cmp_email_subject_a", "email", "exp-email-subject", 0.2, 0.6, 1.3),
    Experiment("cmp_email_subject_b", "email", "exp-email-subject", 0.6, 1.0, 1.3),
]


BUCKET_SQL = (
    "select (('0x' || left(sha256(? || '|' || key), 8))::ubigint / 4294967296.0) as bucket "
    "from keys"
)


def bucket(salt: str, keys: pa.Array) -> np.ndarray:
    """The public split bucket in [0, 1) of each key under `salt` (the pipeline's formula)."""
    con = duckdb.connect()
    try:
        con.register("keys", pa.table({"key": keys}))
        return con.execute(BUCKET_SQL, [salt]).fetchnumpy()["bucket"].astype(float)
    finally:
        con.close()


def assignment(crm_ids: pa.Array, crm_person: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """(reached[campaign, person], on_list[person]). The list is deduplicated to one record per
    person, the smallest crm_customer_id, before the split: splitting records would reach a
    person with several records (often a loyal, frequent buyer) more often than others."""
    reached = np.zeros((len(EXPERIMENTS), n), bool)
    first = (
        pa.table({"person": pa.array(crm_person, pa.int64()), "id": crm_ids})
        .group_by("person")
        .aggregate([("id", "min")])
    )
    person = first.column("person").to_numpy()
    on_list = np.zeros(n, bool)
    on_list[person] = True
    buckets = {salt: bucket(salt, first.column("id_min")) for salt in {e.salt for e in EXPERIMENTS}}
    for c, exp in enumerate(EXPERIMENTS):
        b = buckets[exp.salt]
        reached[c, person[(b >= exp.arm_from) & (b < exp.arm_to)]] = True
    return reached, on_list


def _window_intensity(pop: Population, launch: float) -> tuple[np.ndarray, np.ndarray]:
    """Expected purchases per person in [launch, days): (before `change`, after `change`)."""
    early = np.clip(pop.change - launch, 0.0, None) * pop.r_early
    late = (pop.days - np.maximum(pop.change, launch)) * pop.r_late
    return early, late


def add_campaign_purchases(
    pop: Population,
    act: Activity,
    reached: np.ndarray,
    launch: float,
    rng: np.random.Generator,
) -> Activity:
    """Activity with the purchases the campaigns caused after day offset `launch`."""
    multiplier = np.prod(
        np.where(reached, np.array([e.uplift for e in EXPERIMENTS])[:, None], 1.0), axis=0
    )
    early, late = _window_intensity(pop, launch)
    extra = multiplier - 1.0
    n_e = rng.poisson(extra * early)
    n_l = rng.poisson(extra * late)
    p_e = np.repeat(np.arange(pop.n), n_e)
    p_l = np.repeat(np.arange(pop.n), n_l)
    start_l = np.maximum(pop.change, launch)
    t_e = launch + rng.random(len(p_e)) * np.clip(pop.change[p_e] - launch, 0.0, None)
    t_l = start_l[p_l] + rng.random(len(p_l)) * (pop.days - start_l[p_l])
    person = np.concatenate([p_e, p_l])
    t = np.minimum(np.concatenate([t_e, t_l]), pop.days - 1e-4)
    store = rng.random(len(person)) < pop.store_share[person]
    scale = (pop.days - 0.05) / pop.days
    txn_person = np.concatenate([act.txn_person, person[store]])
    txn_t = np.concatenate([act.txn_t, t[store]])
    txn_return = np.concatenate([act.txn_return, np.zeros(store.sum(), bool)])
    sess_person = np.concatenate([act.sess_person, person[~store]])
    sess_t = np.concatenate([act.sess_t, t[~store] * scale])
    sess_purchase = np.concatenate([act.sess_purchase, np.ones((~store).sum(), bool)])
    o1 = np.argsort(txn_t, kind="stable")
    o2 = np.argsort(sess_t, kind="stable")
    return Activity(
        txn_person=txn_person[o1],
        txn_t=txn_t[o1],
        txn_return=txn_return[o1],
        sess_person=sess_person[o2],
        sess_t=sess_t[o2],
        sess_purchase=sess_purchase[o2],
    )


def _buying_share(intensity: np.ndarray) -> float:
    """Expected share of persons with at least one purchase; NaN for nobody."""
    return float(np.mean(1.0 - np.exp(-intensity))) if len(intensity) else float("nan")


def campaign_truth(
    pop: Population, reached: np.ndarray, on_list: np.ndarray, launch: float
) -> pa.Table:
    """Per campaign: true uplift of the purchase rate, arm sizes, the expected share buying after
    launch in the reached arm and in the control (latent rates, every campaign included), and
    `true_conversion_lift`: the reached arm's expected buying share over the same persons'
    share without this campaign, minus 1 (0 for a campaign with no effect)."""
    uplifts = np.array([e.uplift for e in EXPERIMENTS])
    multiplier = np.prod(np.where(reached, uplifts[:, None], 1.0), axis=0)
    early, late = _window_intensity(pop, launch)
    base = early + late
    rows: dict[str, list] = {
        k: []
        for k in (
            "campaign_id",
            "segment_id",
            "true_uplift",
            "reached",
            "control",
            "expected_rate_reached",
            "expected_rate_control",
            "true_conversion_lift",
        )
    }
    for c, exp in enumerate(EXPERIMENTS):
        same = [k for k, e in enumerate(EXPERIMENTS) if e.salt == exp.salt]
        control = on_list & ~reached[same].any(axis=0)
        own = np.where(reached[c], multiplier / exp.uplift, multiplier)
        without = _buying_share(base[reached[c]] * own[reached[c]])
        rate_r = _buying_share(base[reached[c]] * multiplier[reached[c]])
        rate_c = _buying_share(base[control] * multiplier[control])
        for key, value in (
            ("campaign_id", exp.campaign_id),
            ("segment_id", CRM_LIST_SEGMENT),
            ("true_uplift", exp.uplift),
            ("reached", int(reached[c].sum())),
            ("control", int(control.sum())),
            ("expected_rate_reached", round(rate_r, 6)),
            ("expected_rate_control", round(rate_c, 6)),
            ("true_conversion_lift", round(rate_r / without - 1.0, 6) if without else None),
        ):
            rows[key].append(value)
    return pa.table(rows)
