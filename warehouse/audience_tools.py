"""What the `microseg segments` commands and access requests ask of compiled audiences:
why a person is (not) in each segment, and a preview of a file's segments on published data.

Both run the SQL compiled by warehouse/audiences.py (the same text dbt runs) over whichever
relations hold the attributes, events and condition rows: the warehouse's (access requests) or
the serving snapshot's (the commands, which never wait on a running refresh).
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb

from warehouse.audiences import render


@dataclass(frozen=True)
class Relations:
    """Where the compiled SQL reads from: relation names (or parenthesised queries)."""

    attributes: str
    events: str
    conditions: str
    as_of: str


def _rows(cursor: duckdb.DuckDBPyConnection) -> list[dict]:
    names = [d[0] for d in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def explain_person(
    con: duckdb.DuckDBPyConnection, person_id: str, leaves_sql: str, rel: Relations
) -> list[dict]:
    """Per segment: whether the person meets its condition, and every condition of its tree
    with whether it held and the value that decided it (the attribute's value, the number of
    matching events or sessions)."""
    sql = render(
        leaves_sql,
        attributes=f"(select * from {rel.attributes} where person_id = $person_id)",
        events=f"(select * from {rel.events} where person_id = $person_id)",
        conditions=rel.conditions,
        as_of=rel.as_of,
    )
    leaves = _rows(con.execute(sql + "\nselect * from leaves", {"person_id": person_id}))
    if not leaves:
        return []
    values = leaves[0]
    nodes = _rows(
        con.execute(
            f"select node_id, parent_id, segment_id, kind, summary, target_segment "
            f"from {rel.conditions} order by node_id"
        )
    )
    children: dict[int | None, list[dict]] = {}
    roots: dict[str, dict] = {}
    for node in nodes:
        children.setdefault(node["parent_id"], []).append(node)
        if node["parent_id"] is None:
            roots[node["segment_id"]] = node

    def holds(node: dict) -> bool:
        kind = node["kind"]
        if kind in ("all", "any", "none"):
            results = [holds(c) for c in children.get(node["node_id"], [])]
            return {"all": all, "any": any}.get(kind, lambda r: not any(r))(results)
        if kind == "in_segment":
            return holds(roots[node["target_segment"]])
        return bool(values.get(f"c{node['node_id']}"))

    def lines(node: dict, depth: int) -> list[dict]:
        kind = node["kind"]
        entry = {"depth": depth, "condition": node["summary"], "held": holds(node)}
        if kind in ("attribute", "event", "session"):
            entry["value"] = values.get(f"v{node['node_id']}")
        out = [entry]
        if kind not in ("session",):  # a session's events are counted together
            for child in children.get(node["node_id"], []):
                out.extend(lines(child, depth + 1))
        return out

    return [
        {"segment_id": seg_id, "meets_condition": holds(root), "conditions": lines(root, 0)}
        for seg_id, root in sorted(roots.items())
    ]


def format_explanation(explained: list[dict], memberships: dict[str, str]) -> str:
    """The explanation as text: one block per segment, a mark per condition."""
    out = []
    for seg in explained:
        status = memberships.get(seg["segment_id"]) or (
            "meets the condition" if seg["meets_condition"] else "does not meet the condition"
        )
        out.append(f"{seg['segment_id']}: {status}")
        for line in seg["conditions"]:
            mark = "yes" if line["held"] else "no "
            value = f"  (value: {line['value']})" if "value" in line else ""
            out.append(f"  {'  ' * line['depth']}[{mark}] {line['condition']}{value}")
    return "\n".join(out)


def preview_segments(
    con: duckdb.DuckDBPyConnection,
    matches_sql: str,
    rel: Relations,
    segments: list[dict],
    profiles: str,
    published_members: str | None,
) -> list[dict]:
    """Sizes of the given segments (rows of segment_rows) on the relations: meeting the
    condition, after consent to the purpose, after exclusive groups among these segments (those
    too small to publish take nobody, as in the run's int_segment_memberships_resolved), in the
    holdout (keyed hash, as for new entrants), and overlaps with each other and with the
    published segments."""
    con.execute(
        "create or replace temp table _preview_matches as "
        + render(
            matches_sql,
            attributes=rel.attributes,
            events=rel.events,
            conditions=rel.conditions,
            as_of=rel.as_of,
        )
    )
    con.execute(
        "create or replace temp table _preview_segments (segment_id varchar, purpose varchar, "
        "segment_group varchar, priority integer, holdout_share double, min_size integer)"
    )
    con.executemany(
        "insert into _preview_segments values (?, ?, ?, ?, ?, ?)",
        [
            [
                s["segment_id"],
                s["purpose"],
                s["segment_group"],
                s["priority"],
                s["holdout_share"],
                s["min_size"],
            ]
            for s in segments
        ],
    )
    con.execute(
        f"""
        create or replace temp table _preview_members as
        with consents as (
            unpivot (select person_id, columns('^consent_') from {profiles})
            on columns('^consent_') into name consent_column value has_consent
        ),
        judged as (
            select m.segment_id, m.person_id, s.segment_group, s.priority, s.holdout_share,
                coalesce(c.has_consent, false) as consented
            from _preview_matches m
            join _preview_segments s using (segment_id)
            left join consents c
                on c.person_id = m.person_id and c.consent_column = 'consent_' || s.purpose
        )
        ,
        sizable as (
            select j.segment_id, count(*) filter (where j.consented) >= max(s.min_size) as ok
            from judged j join _preview_segments s using (segment_id)
            group by j.segment_id
        )
        select j.*,
            j.consented and (j.segment_group is null or row_number() over (
                partition by j.segment_group, j.person_id, j.consented
                order by sizable.ok desc, j.priority, j.segment_id
            ) = 1) as member,
            holdout_bucket(j.segment_id, j.person_id) < round(j.holdout_share * 10000)
                as in_holdout
        from judged j join sizable using (segment_id)
        """
    )
    sizes = {
        r["segment_id"]: r
        for r in _rows(
            con.execute(
                """
                select s.segment_id, s.min_size,
                    count(p.person_id) as meets_condition,
                    count(p.person_id) filter (where p.consented) as after_consent,
                    count(p.person_id) filter (where p.member) as members,
                    count(p.person_id) filter (where p.member and p.in_holdout) as holdout,
                    count(p.person_id) filter (where p.member and not p.in_holdout)
                        as targetable
                from _preview_segments s
                left join _preview_members p using (segment_id)
                group by s.segment_id, s.min_size
                """
            )
        )
    }
    overlap_sources = ["select segment_id, person_id from _preview_members where member"]
    if published_members:
        overlap_sources.append(
            f"select segment_id, person_id from {published_members} "
            "where segment_id not in (select segment_id from _preview_segments)"
        )
    overlaps = _rows(
        con.execute(
            f"""
            with others as ({" union all ".join(overlap_sources)})
            select p.segment_id, o.segment_id as other_segment_id, count(*) as overlap
            from _preview_members p
            join others o on o.person_id = p.person_id and o.segment_id <> p.segment_id
            where p.member
            group by all
            order by p.segment_id, overlap desc, other_segment_id
            """
        )
    )
    result = []
    for seg in segments:
        row = {"segment_id": seg["segment_id"], **sizes[seg["segment_id"]]}
        row["publishable"] = row["members"] >= row["min_size"]
        row["overlaps"] = [
            {"segment_id": o["other_segment_id"], "overlap": o["overlap"]}
            for o in overlaps
            if o["segment_id"] == seg["segment_id"]
        ]
        result.append(row)
    for name in ("_preview_matches", "_preview_segments", "_preview_members"):
        con.execute(f"drop table if exists {name}")
    return result
