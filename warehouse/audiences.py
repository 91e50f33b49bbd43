"""Audience files: the YAML segments marketers write, validated and compiled to SQL.

`load_audiences(folder, catalog)` reads every `*.yml`/`*.yaml` file under the folder, checks it
against the format in docs/segments.md and returns the segments with their condition trees, or
raises `AudienceError` listing every problem with its file, line and a suggestion. Nothing here
touches the warehouse: validation needs only the attribute catalogue (`attribute_catalog()`, the
documented columns of the dbt models).

`compile_audiences(audiences)` turns the trees into
- `conditions`: one row per condition node, every user value in a typed column (the table
  `raw.audience_conditions`), and
- SQL that reads those rows as data: the only things rendered into the SQL text are identifiers
  validated against the catalogue or the id pattern, node numbers and operators of the closed
  vocabulary below. Relations are placeholders (`__ATTRIBUTES__`, `__EVENTS__`,
  `__CONDITIONS__`, `__AS_OF__`) that the caller fills: dbt with `ref()`s (models/segments), the
  preview and explain commands with the serving snapshot's tables.
All event conditions of all segments are answered by one pass over the events (a join on the
event type), and all segments by one pass over the persons.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any

import yaml

from warehouse.sources import CONSENT_PURPOSES, URBANICITY, WEB_EVENT_TYPES

SEGMENT_ID = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KINDS = ("rule", "rfm", "cluster", "propensity", "clv", "lookalike")
# Event vocabulary: the web event types, plus in-store purchases (`purchase` with channel
# `store`) and returns of POS lines (`return`).
EVENT_TYPES = (*WEB_EVENT_TYPES, "return")
CHANNELS = ("store", "web", "app", "email")
DEVICES = ("mobile", "desktop", "tablet", "app")
GENDERS = ("f", "m", "x")
# Text attributes with a closed vocabulary: values are checked against it.
VOCABULARIES = {"urbanicity": URBANICITY, "gender": GENDERS}

COMBINATORS = ("all", "any", "none")
LEAVES = ("attribute", "event", "session", "in_segment")
NUMERIC_OPERATORS = ("eq", "ne", "lt", "le", "gt", "ge", "between", "in", "not_in", "is_null")
TEXT_OPERATORS = ("eq", "ne", "in", "not_in", "is_null")
BOOLEAN_OPERATORS = ("eq", "ne", "is_null")
OPERATORS = NUMERIC_OPERATORS
SQL_COMPARISON = {"eq": "=", "ne": "<>", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}

SEGMENT_KEYS = (
    "id",
    "name",
    "description",
    "purpose",
    "kind",
    "min_size",
    "holdout_share",
    "group",
    "priority",
    "rank_by",
    "personalization",
    "where",
)
PERSONALIZATION_KEYS = ("offer", "template", "variables", "priority", "channels")
# Feed channels and their file formats (warehouse/feeds.py).
FEED_CHANNELS = ("dco", "email")
EVENT_KEYS = (
    "type",
    "sku",
    "category",
    "page_contains",
    "channel",
    "device",
    "at_least",
    "at_most",
    "within_days",
    "between",
)
SESSION_EVENT_KEYS = tuple(k for k in EVENT_KEYS if k not in ("within_days", "between"))
SESSION_KEYS = ("events", "within_days", "between", "at_least")
DEFAULT_RANK_BY = "propensity_30d"

# Attribute types the catalogue knows, from the dbt `data_type` of each documented column.
NUMERIC_TYPES = ("tinyint", "smallint", "integer", "int", "bigint", "hugeint", "double", "float")
TEXT_TYPES = ("varchar", "text", "string")
DATE_TYPES = ("date", "timestamp", "timestamptz")

DBT_MODELS = Path(__file__).resolve().parent.parent / "dbt_project" / "models"
# The person-level tables whose documented columns are attributes (joined in
# marts.segment_attributes), and the columns that are never attributes.
ATTRIBUTE_TABLES = ("customer_profiles", "customer_features", "customer_scores")
NOT_ATTRIBUTES = frozenset({"person_id", "as_of", "email_key", "phone_key"})


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class AudienceError(ValueError):
    """Every problem of the audience files, one line each (`file:line: message`)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


# What people write for our names, from SQL and other tools: suggested before close spellings.
ALIASES = {
    "gte": "ge", ">=": "ge", "lte": "le", "<=": "le", ">": "gt", "<": "lt", "=": "eq",
    "==": "eq", "equals": "eq", "!=": "ne", "<>": "ne", "neq": "ne", "nin": "not_in",
    "not in": "not_in", "notin": "not_in", "and": "all", "or": "any", "not": "none",
    "min": "at_least", "max": "at_most", "within": "within_days", "days": "within_days",
    "last_days": "within_days", "types": "type", "event_type": "type", "segment": "in_segment",
    "order_by": "rank_by", "sort_by": "rank_by", "consent": "purpose", "holdout": "holdout_share",
}  # fmt: skip


def _suggest(word: object, candidates) -> str:
    candidates = [str(c) for c in candidates]
    alias = ALIASES.get(str(word).strip().lower())
    if alias in candidates:
        return f"; did you mean `{alias}`?"
    close = difflib.get_close_matches(str(word), candidates, n=1, cutoff=0.6)
    return f"; did you mean `{close[0]}`?" if close else ""


def _one_of(candidates) -> str:
    return ", ".join(f"`{c}`" for c in candidates)


# ---------------------------------------------------------------------------------------------
# YAML with line numbers


class _Map(dict):
    line: int = 0
    lines: dict

    def line_of(self, key) -> int:
        return self.lines.get(key, self.line)


class _Seq(list):
    line: int = 0
    lines: list


class _DuplicateKey(Exception):
    def __init__(self, key, line):
        self.key, self.line = key, line


class _Loader(yaml.SafeLoader):
    pass


def _construct_mapping(loader: _Loader, node: yaml.MappingNode) -> _Map:
    loader.flatten_mapping(node)
    mapping = _Map()
    mapping.line = node.start_mark.line + 1
    mapping.lines = {}
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in mapping:
            raise _DuplicateKey(key, key_node.start_mark.line + 1)
        mapping[key] = loader.construct_object(value_node, deep=True)
        mapping.lines[key] = key_node.start_mark.line + 1
    return mapping


def _construct_sequence(loader: _Loader, node: yaml.SequenceNode) -> _Seq:
    seq = _Seq(loader.construct_object(child, deep=True) for child in node.value)
    seq.line = node.start_mark.line + 1
    seq.lines = [child.start_mark.line + 1 for child in node.value]
    return seq


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_SEQUENCE_TAG, _construct_sequence)


# ---------------------------------------------------------------------------------------------
# The attribute catalogue


@dataclass(frozen=True)
class Attribute:
    name: str
    kind: str  # numeric | text | boolean | date
    table: str
    description: str = ""


def _kind_of(data_type: str) -> str | None:
    base = data_type.lower().split("(")[0].strip()
    if base in NUMERIC_TYPES or base.startswith("decimal"):
        return "numeric"
    if base in TEXT_TYPES:
        return "text"
    if base == "boolean":
        return "boolean"
    if base in DATE_TYPES:
        return "date"
    return None


@functools.lru_cache(maxsize=4)
def feed_variables(models_dir: Path = DBT_MODELS) -> tuple[str, ...]:
    """The template variables a segment's `personalization` may name: the documented columns of
    marts.personalization_variables (its dbt yml), person_id aside."""
    for path in sorted(models_dir.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        for entry in doc.get("models") or []:
            if entry.get("name") == "personalization_variables":
                return tuple(
                    c["name"] for c in entry.get("columns") or [] if c["name"] != "person_id"
                )
    return ()


def attribute_catalog(models_dir: Path = DBT_MODELS) -> dict[str, Attribute]:
    """Every attribute a condition or `rank_by` may name: the documented, typed columns of the
    person-level tables (minus direct identifiers and keys) and of marts.segment_attributes."""
    from warehouse.publish import DIRECT_IDENTIFIER_COLUMNS, SOURCE_KEY_COLUMNS

    tables = (*ATTRIBUTE_TABLES, "segment_attributes")
    found: dict[str, Attribute] = {}
    for path in sorted(models_dir.rglob("*.yml")):
        doc = yaml.safe_load(path.read_text()) or {}
        entries = list(doc.get("models") or [])
        for source in doc.get("sources") or []:
            entries.extend(source.get("tables") or [])
        for entry in entries:
            if entry.get("name") not in tables:
                continue
            for column in entry.get("columns") or []:
                name = column["name"]
                kind = _kind_of(str(column.get("data_type") or ""))
                if (
                    kind is None
                    or name in NOT_ATTRIBUTES
                    or name in DIRECT_IDENTIFIER_COLUMNS
                    or name in SOURCE_KEY_COLUMNS
                    or name.startswith("consent_")
                ):
                    continue
                described = " ".join(str(column.get("description") or "").split())
                # segment_attributes documents the derived ones (age, urbanicity, ...); the
                # source tables' own entries win for the rest
                if name not in found or entry["name"] != "segment_attributes":
                    found[name] = Attribute(name, kind, entry["name"], described)
    return dict(sorted(found.items()))


# ---------------------------------------------------------------------------------------------
# The parsed form


@dataclass
class Node:
    """One condition: a combinator with children, or a leaf with its typed parameters."""

    kind: str  # all | any | none | attribute | event | session | session_event | in_segment
    file: str
    line: int
    children: list[Node] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    node_id: int = 0


@dataclass
class Segment:
    segment_id: str
    name: str
    description: str
    purpose: str
    kind: str
    min_size: int | None
    holdout_share: float | None
    group: str | None
    priority: int
    rank_by: str
    rank_order: str
    where: Node
    file: str
    line: int
    definition: dict
    path: Path | None = None
    personalization: dict | None = None

    @property
    def version(self) -> str:
        """A hash of the definition: changes whenever the segment's meaning changes."""
        canonical = json.dumps(self.definition, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()[:12]


@dataclass
class Audiences:
    segments: list[Segment]
    files: list[str]


def _plain(value):
    """The YAML value without line bookkeeping, JSON-ready."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


class _Checker:
    def __init__(self, file: str, catalog: dict[str, Attribute]):
        self.file = file
        self.catalog = catalog
        self.problems: list[Problem] = []

    def problem(self, line: int, message: str) -> None:
        self.problems.append(Problem(self.file, line, message))

    def keys(self, mapping: _Map, allowed, what: str) -> None:
        for key in mapping:
            if key not in allowed:
                self.problem(
                    mapping.line_of(key),
                    f"unknown key `{key}` in {what}{_suggest(key, allowed)} "
                    f"(allowed: {_one_of(allowed)})",
                )

    def integer(self, mapping: _Map, key: str, lo: int, what: str) -> int | None:
        value = mapping.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            self.problem(
                mapping.line_of(key),
                f"`{key}` of {what} must be a whole number >= {lo}, got {value!r}",
            )
            return None
        return value

    def text(self, mapping: _Map, key: str, what: str, vocabulary=None) -> str | None:
        value = mapping.get(key)
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            self.problem(mapping.line_of(key), f"`{key}` of {what} must be text, got {value!r}")
            return None
        value = value.strip()
        if vocabulary is not None and value.lower() not in vocabulary:
            self.problem(
                mapping.line_of(key),
                f"`{key}` of {what} is `{value}`, not one of {_one_of(vocabulary)}"
                f"{_suggest(value.lower(), vocabulary)}",
            )
            return None
        return value.lower() if vocabulary is not None else value

    def dates(self, mapping: _Map, key: str, what: str) -> tuple[date, date] | None:
        value = mapping.get(key)
        if value is None:
            return None
        line = mapping.line_of(key)
        if not isinstance(value, list) or len(value) != 2:
            self.problem(line, f"`{key}` of {what} must be two dates [from, to], got {value!r}")
            return None
        parsed = []
        for item in value:
            if isinstance(item, datetime):
                item = item.date()
            if isinstance(item, str):
                try:
                    item = date.fromisoformat(item.strip())
                except ValueError:
                    pass
            if not isinstance(item, date):
                self.problem(line, f"`{key}` of {what}: {item!r} is not a date (YYYY-MM-DD)")
                return None
            parsed.append(item)
        if parsed[0] > parsed[1]:
            self.problem(line, f"`{key}` of {what}: {parsed[0]} is after {parsed[1]}")
            return None
        return parsed[0], parsed[1]

    # -- conditions -----------------------------------------------------------------------

    def condition(self, value, line: int, where: str) -> Node | None:
        if not isinstance(value, _Map) or not value:
            self.problem(
                line,
                f"a condition in {where} must be a mapping with one of "
                f"{_one_of((*COMBINATORS, *LEAVES))}, got {value!r}",
            )
            return None
        line = value.line
        heads = [k for k in value if k in (*COMBINATORS, *LEAVES)]
        if not heads:
            key = next(iter(value))
            self.problem(
                value.line_of(key),
                f"unknown condition `{key}` in {where}"
                f"{_suggest(key, (*COMBINATORS, *LEAVES, *OPERATORS))} "
                f"(a condition is one of {_one_of((*COMBINATORS, *LEAVES))})",
            )
            return None
        if len(heads) > 1 and not (heads == ["attribute"]):
            self.problem(
                line,
                f"one condition per list item in {where}: found {_one_of(heads)}; "
                "wrap them in `all:` or `any:`",
            )
            return None
        head = heads[0]
        if head in COMBINATORS:
            self.keys(value, (head,), f"`{head}`")
            items = value[head]
            if not isinstance(items, _Seq) or not items:
                self.problem(value.line_of(head), f"`{head}` takes a non-empty list of conditions")
                return None
            children = [
                self.condition(item, items.lines[i], f"`{head}`") for i, item in enumerate(items)
            ]
            if any(c is None for c in children):
                return None
            return Node(head, self.file, line, children=children)
        if head == "attribute":
            return self.attribute(value)
        if head == "event":
            self.keys(value, ("event",), "an `event` condition")
            return self.event(value["event"], value.line_of("event"), "event", EVENT_KEYS)
        if head == "session":
            self.keys(value, ("session",), "a `session` condition")
            return self.session(value["session"], value.line_of("session"))
        self.keys(value, ("in_segment",), "an `in_segment` condition")
        target = value["in_segment"]
        if not isinstance(target, str) or not SEGMENT_ID.match(target):
            self.problem(
                value.line_of("in_segment"), f"`in_segment` needs a segment id, got {target!r}"
            )
            return None
        return Node("in_segment", self.file, line, params={"target_segment": target})

    def attribute(self, value: _Map) -> Node | None:
        name = value["attribute"]
        line = value.line_of("attribute")
        if not isinstance(name, str) or name not in self.catalog:
            self.problem(
                line,
                f"unknown attribute `{name}`{_suggest(name, self.catalog)} "
                "(attributes: the documented columns of customer_profiles, customer_features, "
                "customer_scores and segment_attributes, see docs/segments.md)",
            )
            return None
        attr = self.catalog[name]
        allowed = {
            "numeric": NUMERIC_OPERATORS,
            "text": TEXT_OPERATORS,
            "boolean": BOOLEAN_OPERATORS,
            "date": NUMERIC_OPERATORS,
        }[attr.kind]
        ops = [k for k in value if k != "attribute"]
        if len(ops) != 1:
            self.problem(
                value.line,
                f"attribute `{name}` needs exactly one operator of {_one_of(allowed)}, "
                f"got {_one_of(ops) if ops else 'none'}",
            )
            return None
        op = ops[0]
        op_line = value.line_of(op)
        if op not in OPERATORS:
            self.problem(
                op_line,
                f"unknown operator `{op}` for attribute `{name}`{_suggest(op, allowed)} "
                f"(operators: {_one_of(allowed)})",
            )
            return None
        if op not in allowed:
            self.problem(
                op_line,
                f"operator `{op}` does not apply to `{name}`, a {attr.kind} attribute "
                f"(operators for it: {_one_of(allowed)})",
            )
            return None
        params: dict[str, Any] = {"attribute": name, "operator": op}
        raw = value[op]
        if op == "is_null":
            if not isinstance(raw, bool):
                self.problem(op_line, f"`is_null` takes true or false, got {raw!r}")
                return None
            params["bool_value"] = raw
            return Node("attribute", self.file, value.line, params=params)
        if op == "between":
            if not isinstance(raw, list) or len(raw) != 2:
                self.problem(op_line, f"`between` takes two values [low, high], got {raw!r}")
                return None
            lo, hi = (self.typed(attr, v, op_line) for v in raw)
            if lo is None or hi is None:
                return None
            if lo > hi:
                self.problem(op_line, f"`between` of `{name}`: {raw[0]!r} is above {raw[1]!r}")
                return None
            params.update(self.slot(attr, lo, "lo"))
            params.update(self.slot(attr, hi, "hi"))
            return Node("attribute", self.file, value.line, params=params)
        if op in ("in", "not_in"):
            if not isinstance(raw, list) or not raw:
                self.problem(op_line, f"`{op}` takes a non-empty list of values, got {raw!r}")
                return None
            typed = [self.typed(attr, v, op_line) for v in raw]
            if any(v is None for v in typed):
                return None
            if attr.kind == "numeric":
                params["num_list"] = [float(v) for v in typed]
            elif attr.kind == "date":
                params["date_list"] = typed
            else:
                params["text_list"] = typed
            return Node("attribute", self.file, value.line, params=params)
        typed = self.typed(attr, raw, op_line)
        if typed is None:
            return None
        params.update(self.slot(attr, typed, "lo"))
        return Node("attribute", self.file, value.line, params=params)

    @staticmethod
    def slot(attr: Attribute, value, which: str) -> dict:
        if attr.kind == "numeric":
            return {f"num_{which}": float(value)}
        if attr.kind == "date":
            return {f"date_{which}": value}
        if attr.kind == "boolean":
            return {"bool_value": value}
        return {"text_value": value}

    def typed(self, attr: Attribute, value, line: int):
        name = attr.name
        if attr.kind == "numeric":
            if isinstance(value, bool) or not isinstance(value, int | float):
                self.problem(line, f"`{name}` is a number; {value!r} is not one")
                return None
            return value
        if attr.kind == "boolean":
            if not isinstance(value, bool):
                self.problem(line, f"`{name}` is true or false; {value!r} is not")
                return None
            return value
        if attr.kind == "date":
            if isinstance(value, datetime):
                return value.date()
            if isinstance(value, date):
                return value
            try:
                return date.fromisoformat(str(value).strip())
            except ValueError:
                self.problem(line, f"`{name}` is a date (YYYY-MM-DD); {value!r} is not one")
                return None
        if not isinstance(value, str):
            # YAML reads 02134 as a number (octal), NO as false: quoting keeps what was written
            self.problem(
                line,
                f"`{name}` is text; {value!r} is not (YAML read it as a "
                f'{type(value).__name__}): quote it, e.g. "{value}"',
            )
            return None
        text = value.strip().lower()
        vocabulary = VOCABULARIES.get(name)
        if vocabulary is not None and text not in vocabulary:
            self.problem(
                line,
                f"`{name}` is one of {_one_of(vocabulary)}; `{value}` is not"
                f"{_suggest(text, vocabulary)}",
            )
            return None
        return text

    def event(self, value, line: int, kind: str, allowed) -> Node | None:
        what = "an event condition" if kind == "event" else "an event of a session"
        if isinstance(value, str | _Seq):
            value = _Map({"type": value})
            value.line, value.lines = line, {"type": line}
        if not isinstance(value, _Map):
            self.problem(line, f"{what} is a mapping with `type` and options, got {value!r}")
            return None
        before = len(self.problems)
        self.keys(value, allowed, what)
        types = value.get("type")
        if types is None:
            self.problem(value.line, f"{what} needs `type` (one of {_one_of(EVENT_TYPES)})")
            return None
        type_list = types if isinstance(types, list) else [types]
        clean = []
        for t in type_list:
            if not isinstance(t, str) or t.strip().lower() not in EVENT_TYPES:
                self.problem(
                    value.line_of("type"),
                    f"unknown event type `{t}`{_suggest(t, EVENT_TYPES)} "
                    f"(types: {_one_of(EVENT_TYPES)})",
                )
            else:
                clean.append(t.strip().lower())
        params: dict[str, Any] = {"event_types": sorted(set(clean))}
        params["sku"] = self.text(value, "sku", what)
        category = self.text(value, "category", what)
        params["category"] = category.lower() if category else None
        page = self.text(value, "page_contains", what)
        params["page_contains"] = page.lower() if page else None
        params["channel"] = self.text(value, "channel", what, CHANNELS)
        params["device"] = self.text(value, "device", what, DEVICES)
        at_least = self.integer(value, "at_least", 0, what)
        at_most = self.integer(value, "at_most", 0, what)
        if at_least is None:
            at_least = 0 if at_most is not None else 1
        if at_most is not None and at_most < at_least:
            self.problem(
                value.line_of("at_most"),
                f"`at_most` ({at_most}) is below `at_least` ({at_least}) in {what}",
            )
        params["at_least"], params["at_most"] = at_least, at_most
        if kind == "event":
            self.window(value, params, what)
        if len(self.problems) > before:
            return None
        return Node(kind, self.file, value.line, params=params)

    def window(self, value: _Map, params: dict, what: str) -> None:
        within = self.integer(value, "within_days", 1, what)
        between = self.dates(value, "between", what)
        if within is not None and between is not None:
            self.problem(value.line, f"{what} takes `within_days` or `between`, not both")
        params["within_days"] = within
        params["date_lo"], params["date_hi"] = between if between else (None, None)

    def session(self, value, line: int) -> Node | None:
        what = "a `session` condition"
        if not isinstance(value, _Map):
            self.problem(line, f"{what} is a mapping with `events` and `within_days`")
            return None
        before = len(self.problems)
        self.keys(value, SESSION_KEYS, what)
        events = value.get("events")
        if not isinstance(events, _Seq) or not events:
            self.problem(
                value.line, f"{what} needs `events`: a list of event conditions in one session"
            )
            return None
        children = [
            self.event(item, events.lines[i], "session_event", SESSION_EVENT_KEYS)
            for i, item in enumerate(events)
        ]
        params: dict[str, Any] = {"at_least": self.integer(value, "at_least", 1, what) or 1}
        self.window(value, params, what)
        if len(self.problems) > before or any(c is None for c in children):
            return None
        if not any(c.params["at_least"] > 0 for c in children):
            self.problem(
                events.line,
                f"{what} needs at least one event with `at_least` >= 1 (a session is found "
                "by what happened in it)",
            )
            return None
        for child in children:
            for key in ("within_days", "date_lo", "date_hi"):
                child.params[key] = params[key]
        return Node("session", self.file, value.line, children=children, params=params)

    # -- segments -------------------------------------------------------------------------

    def segment(self, value, line: int) -> Segment | None:
        if not isinstance(value, _Map):
            self.problem(line, f"a segment is a mapping of {_one_of(SEGMENT_KEYS)}")
            return None
        before = len(self.problems)
        self.keys(value, SEGMENT_KEYS, "a segment")
        seg_id = value.get("id")
        if not isinstance(seg_id, str) or not SEGMENT_ID.match(seg_id):
            self.problem(
                value.line_of("id"),
                f"segment `id` must match {SEGMENT_ID.pattern} (lower-case letters, digits, "
                f"underscores), got {seg_id!r}",
            )
            seg_id = None
        what = f"segment `{seg_id}`" if seg_id else "a segment"
        for key in ("name", "purpose", "where"):
            if key not in value:
                self.problem(value.line, f"{what} needs `{key}`")
        name = self.text(value, "name", what)
        description = value.get("description") or ""
        if not isinstance(description, str):
            self.problem(value.line_of("description"), f"`description` of {what} must be text")
        purpose = self.text(value, "purpose", what, CONSENT_PURPOSES)
        kind = self.text(value, "kind", what, KINDS) or "rule"
        min_size = self.integer(value, "min_size", 1, what)
        holdout = value.get("holdout_share")
        if holdout is not None and (
            isinstance(holdout, bool)
            or not isinstance(holdout, int | float)
            or not 0 <= holdout <= 0.5
        ):
            self.problem(
                value.line_of("holdout_share"),
                f"`holdout_share` of {what} must be a number from 0 to 0.5, got {holdout!r}",
            )
        group = value.get("group")
        if group is not None and (not isinstance(group, str) or not SEGMENT_ID.match(group)):
            self.problem(
                value.line_of("group"), f"`group` of {what} must be an id like `lifecycle`"
            )
        priority = self.integer(value, "priority", 1, what)
        if priority is not None and group is None:
            self.problem(
                value.line_of("priority"),
                f"`priority` of {what} orders segments within a `group`; add `group`",
            )
        rank_by, rank_order = self.rank_by(value, what)
        personalization = None
        if "personalization" in value:
            personalization = self.personalization(value["personalization"], value, what)
        where = None
        if "where" in value:
            where = self.condition(value["where"], value.line_of("where"), f"`where` of {what}")
        if len(self.problems) > before or where is None:
            return None
        return Segment(
            segment_id=seg_id,
            name=name,
            description=" ".join(description.split()),
            purpose=purpose,
            kind=kind,
            min_size=min_size,
            holdout_share=float(holdout) if holdout is not None else None,
            group=group,
            priority=priority or 1,
            rank_by=rank_by,
            rank_order=rank_order,
            where=where,
            file=self.file,
            line=value.line,
            definition=_plain(value),
            personalization=personalization,
        )

    def personalization(self, raw, value: _Map, what: str) -> dict | None:
        """The segment's feed entry: an offer, a message template and its variables (documented
        columns of marts.personalization_variables), a priority among a person's segments (1
        first) and the channels whose feeds carry it."""
        line = value.line_of("personalization")
        if not isinstance(raw, _Map):
            self.problem(
                line, f"`personalization` of {what} is a mapping of {_one_of(PERSONALIZATION_KEYS)}"
            )
            return None
        self.keys(raw, PERSONALIZATION_KEYS, "`personalization`")
        offer = self.text(raw, "offer", f"`personalization` of {what}")
        template = raw.get("template")
        if template is not None and (
            not isinstance(template, str) or not SEGMENT_ID.match(template)
        ):
            self.problem(
                raw.line_of("template"),
                f"`template` of {what} must be an id like `loyalty_rewards`, got {template!r}",
            )
        variables = raw.get("variables", [])
        known = feed_variables()
        if not isinstance(variables, list) or not all(isinstance(v, str) for v in variables):
            self.problem(raw.line_of("variables"), f"`variables` of {what} is a list of names")
            variables = []
        for name in variables:
            if name not in known:
                self.problem(
                    raw.line_of("variables"),
                    f"unknown template variable {name!r} in {what}; one of {_one_of(known)}"
                    f"{_suggest(name, known)}",
                )
        priority = self.integer(raw, "priority", 1, f"`personalization` of {what}")
        channels = raw.get("channels", list(FEED_CHANNELS))
        if isinstance(channels, str):
            channels = [channels]
        if not isinstance(channels, list) or not channels:
            self.problem(raw.line_of("channels"), f"`channels` of {what} is a list of channels")
            channels = []
        for channel in channels:
            if channel not in FEED_CHANNELS:
                self.problem(
                    raw.line_of("channels"),
                    f"unknown channel {channel!r} in {what}; one of {_one_of(FEED_CHANNELS)}"
                    f"{_suggest(str(channel), FEED_CHANNELS)}",
                )
        if offer is None:
            self.problem(line, f"`personalization` of {what} needs `offer`")
            return None
        return {
            "offer": offer,
            "template": template or "",
            "variables": list(dict.fromkeys(variables)),
            "priority": priority or 1,
            "channels": sorted(set(channels)),
        }

    def rank_by(self, value: _Map, what: str) -> tuple[str, str]:
        raw = value.get("rank_by", DEFAULT_RANK_BY)
        line = value.line_of("rank_by")
        order = "desc"
        if isinstance(raw, _Map):
            self.keys(raw, ("attribute", "order"), "`rank_by`")
            order = raw.get("order", "desc")
            if order not in ("asc", "desc"):
                self.problem(raw.line_of("order"), f"`order` is `asc` or `desc`, got {order!r}")
            raw = raw.get("attribute")
        attr = self.catalog.get(raw) if isinstance(raw, str) else None
        if attr is None or attr.kind not in ("numeric", "date"):
            self.problem(
                line,
                f"`rank_by` of {what} must name a numeric attribute, got {raw!r}"
                f"{_suggest(raw, [a for a, v in self.catalog.items() if v.kind == 'numeric'])}",
            )
            return DEFAULT_RANK_BY, order
        return raw, order


def _audience_files(folder: Path) -> list[Path]:
    """The audience files under the folder; names (of files or of folders on the way) starting
    with `.` or `_` are drafts and archives, skipped."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix in (".yml", ".yaml")
        and p.is_file()
        and not any(part.startswith((".", "_")) for part in p.relative_to(folder).parts)
    )


def parse_file(path: Path, catalog: dict[str, Attribute], label: str | None = None):
    """The segments of one file and the problems found in it."""
    label = label or str(path)
    checker = _Checker(label, catalog)
    try:
        doc = yaml.load(path.read_text(encoding="utf-8"), Loader=_Loader)  # noqa: S506
    except _DuplicateKey as exc:
        return [], [Problem(label, exc.line, f"key `{exc.key}` appears twice")]
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        return [], [Problem(label, line, f"not valid YAML: {getattr(exc, 'problem', exc)}")]
    except UnicodeDecodeError:
        return [], [Problem(label, 1, "not UTF-8 text")]
    if doc is None:
        return [], []
    if not isinstance(doc, _Map) or "segments" not in doc:
        return [], [Problem(label, 1, "an audience file is a mapping with a `segments:` list")]
    checker.keys(doc, ("segments",), "an audience file")
    items = doc["segments"]
    if not isinstance(items, _Seq):
        checker.problem(doc.line_of("segments"), "`segments` must be a list of segments")
        return [], checker.problems
    segments = [checker.segment(item, items.lines[i]) for i, item in enumerate(items)]
    for seg in segments:
        if seg is not None:
            seg.path = path.resolve()
    return [s for s in segments if s is not None], checker.problems


def _walk(node: Node):
    yield node
    for child in node.children:
        yield from _walk(child)


def _check_references(segments: list[Segment]) -> list[Problem]:
    problems: list[Problem] = []
    by_id: dict[str, Segment] = {}
    for seg in segments:
        if seg.segment_id in by_id:
            first = by_id[seg.segment_id]
            problems.append(
                Problem(
                    seg.file,
                    seg.line,
                    f"segment id `{seg.segment_id}` is already defined at "
                    f"{first.file}:{first.line}",
                )
            )
        else:
            by_id[seg.segment_id] = seg
    refs: dict[str, list[Node]] = {}
    for seg in by_id.values():
        refs[seg.segment_id] = [n for n in _walk(seg.where) if n.kind == "in_segment"]
        for node in refs[seg.segment_id]:
            target = node.params["target_segment"]
            if target not in by_id:
                problems.append(
                    Problem(
                        node.file,
                        node.line,
                        f"`in_segment: {target}` names no segment{_suggest(target, by_id)}",
                    )
                )
    state: dict[str, int] = {}

    def visit(seg_id: str, path: list[str]) -> None:
        state[seg_id] = 1
        for node in refs.get(seg_id, []):
            target = node.params["target_segment"]
            if target not in by_id:
                continue
            if state.get(target) == 1:
                cycle = " -> ".join([*path[path.index(target) :], target])
                problems.append(Problem(node.file, node.line, f"segments form a cycle: {cycle}"))
            elif state.get(target) is None:
                visit(target, [*path, target])
        state[seg_id] = 2

    for seg_id in by_id:
        if state.get(seg_id) is None:
            visit(seg_id, [seg_id])
    groups: dict[str, dict[int, Segment]] = {}
    for seg in by_id.values():
        if seg.group is None:
            continue
        same = groups.setdefault(seg.group, {})
        if seg.priority in same:
            other = same[seg.priority]
            problems.append(
                Problem(
                    seg.file,
                    seg.line,
                    f"segments `{other.segment_id}` and `{seg.segment_id}` of group "
                    f"`{seg.group}` share priority {seg.priority}; priorities in a group differ",
                )
            )
        same[seg.priority] = seg
    return problems


def load_audiences(
    folder: Path,
    catalog: dict[str, Attribute] | None = None,
    root: Path | None = None,
    extra: Path | None = None,
) -> Audiences:
    """Every segment of every audience file under `folder` (and the file `extra`, when it is
    outside it), validated together; raises AudienceError."""
    catalog = attribute_catalog() if catalog is None else catalog
    folder = Path(folder)
    if not folder.is_dir():
        # a mistyped setting must not empty every segment (and its exports) without a word
        raise AudienceError(
            [Problem(str(folder), 0, "no such folder (MICROSEG_SEGMENTS_DIR): no audience files")]
        )
    segments: list[Segment] = []
    problems: list[Problem] = []
    files = _audience_files(folder)
    if extra is not None and Path(extra).resolve() not in {p.resolve() for p in files}:
        files.append(Path(extra))
    labels = []
    for path in files:
        try:
            label = str(path.relative_to(root)) if root else str(path)
        except ValueError:
            label = str(path)
        labels.append(label)
        found, trouble = parse_file(path, catalog, label)
        segments.extend(found)
        problems.extend(trouble)
    problems.extend(_check_references(segments))
    if problems:
        raise AudienceError(problems)
    next_id = 1
    for seg in segments:
        for node in _walk(seg.where):
            node.node_id = next_id
            next_id += 1
    return Audiences(segments, labels)


# ---------------------------------------------------------------------------------------------
# Compilation

CONDITION_COLUMNS = {
    "node_id": "INTEGER",
    "segment_id": "VARCHAR",
    "parent_id": "INTEGER",
    "kind": "VARCHAR",
    "file": "VARCHAR",
    "line": "INTEGER",
    "attribute": "VARCHAR",
    "operator": "VARCHAR",
    "num_lo": "DOUBLE",
    "num_hi": "DOUBLE",
    "text_value": "VARCHAR",
    "bool_value": "BOOLEAN",
    "date_lo": "DATE",
    "date_hi": "DATE",
    "num_list": "DOUBLE[]",
    "text_list": "VARCHAR[]",
    "date_list": "DATE[]",
    "event_types": "VARCHAR[]",
    "sku": "VARCHAR",
    "category": "VARCHAR",
    "page_contains": "VARCHAR",
    "channel": "VARCHAR",
    "device": "VARCHAR",
    "at_least": "INTEGER",
    "at_most": "INTEGER",
    "within_days": "INTEGER",
    "target_segment": "VARCHAR",
    "summary": "VARCHAR",
}

SEGMENT_COLUMNS = {
    "segment_id": "VARCHAR",
    "name": "VARCHAR",
    "kind": "VARCHAR",
    "description": "VARCHAR",
    "definition": "VARCHAR",
    "purpose": "VARCHAR",
    "version": "VARCHAR",
    "min_size": "INTEGER",
    "holdout_share": "DOUBLE",
    "segment_group": "VARCHAR",
    "priority": "INTEGER",
    "rank_by": "VARCHAR",
    "rank_order": "VARCHAR",
    "source_file": "VARCHAR",
    "source_line": "INTEGER",
    "offer": "VARCHAR",
    "message_template": "VARCHAR",
    "template_variables": "VARCHAR[]",
    "feed_priority": "INTEGER",
    "feed_channels": "VARCHAR[]",
}


def describe(node: Node) -> str:
    """A condition in words, for explanations and the definitions table."""
    p = node.params
    if node.kind in COMBINATORS:
        return {"all": "all of", "any": "any of", "none": "none of"}[node.kind]
    if node.kind == "attribute":
        op = p["operator"]
        value = next(
            (p[k] for k in ("num_list", "text_list", "date_list") if p.get(k) is not None),
            None,
        )
        if op == "between":
            lo = p.get("num_lo", p.get("date_lo"))
            hi = p.get("num_hi", p.get("date_hi"))
            return f"{p['attribute']} between {_fmt(lo)} and {_fmt(hi)}"
        if op == "is_null":
            return f"{p['attribute']} is {'' if p['bool_value'] else 'not '}null"
        if value is None:
            value = next(p[k] for k in ("num_lo", "text_value", "bool_value", "date_lo") if k in p)
        words = {
            "eq": "=", "ne": "≠", "lt": "<", "le": "≤", "gt": ">", "ge": "≥",
            "in": "in", "not_in": "not in",
        }  # fmt: skip
        return f"{p['attribute']} {words[op]} {_fmt(value)}"
    if node.kind in ("event", "session_event"):
        parts = [" or ".join(p["event_types"])]
        for key in ("sku", "category", "channel", "device"):
            if p.get(key):
                parts.append(f"{key} {p[key]}")
        if p.get("page_contains"):
            parts.append(f"page contains '{p['page_contains']}'")
        count = _count_words(p["at_least"], p["at_most"])
        text = f"{count} {', '.join(parts)} event(s)"
        return text + (_window_words(p) if node.kind == "event" else "")
    if node.kind == "session":
        return f"at least {p['at_least']} session(s){_window_words(p)} with all of"
    return f"in segment {p['target_segment']}"


def _fmt(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    return str(value)


def _count_words(at_least: int, at_most: int | None) -> str:
    if at_most is None:
        return f"at least {at_least}"
    if at_least == 0:
        return f"at most {at_most}"
    return f"{at_least} to {at_most}"


def _window_words(p: dict) -> str:
    if p.get("within_days"):
        return f" in the last {p['within_days']} days"
    if p.get("date_lo"):
        return f" between {p['date_lo']} and {p['date_hi']}"
    return ""


def condition_rows(audiences: Audiences) -> list[dict]:
    rows = []
    for seg in audiences.segments:

        def add(node: Node, parent: int | None, seg_id: str = seg.segment_id) -> None:
            row = dict.fromkeys(CONDITION_COLUMNS)
            row.update(
                node_id=node.node_id,
                segment_id=seg_id,
                parent_id=parent,
                kind=node.kind,
                file=node.file,
                line=node.line,
                summary=describe(node),
            )
            row.update({k: v for k, v in node.params.items() if k in CONDITION_COLUMNS})
            rows.append(row)
            for child in node.children:
                add(child, node.node_id)

        add(seg.where, None)
    return rows


def segment_rows(audiences: Audiences, min_size: int, holdout_share: float) -> list[dict]:
    """One row per segment, the settings' defaults filled in where the file leaves them."""
    return [
        {
            "segment_id": s.segment_id,
            "name": s.name,
            "kind": s.kind,
            "description": s.description,
            "definition": json.dumps(s.definition, sort_keys=True, default=str),
            "purpose": s.purpose,
            "version": s.version,
            "min_size": s.min_size if s.min_size is not None else min_size,
            "holdout_share": s.holdout_share if s.holdout_share is not None else holdout_share,
            "segment_group": s.group,
            "priority": s.priority,
            "rank_by": s.rank_by,
            "rank_order": s.rank_order,
            "source_file": s.file,
            "source_line": s.line,
            **(
                {
                    "offer": s.personalization["offer"],
                    "message_template": s.personalization["template"] or None,
                    "template_variables": s.personalization["variables"],
                    "feed_priority": s.personalization["priority"],
                    "feed_channels": s.personalization["channels"],
                }
                if s.personalization
                else {}
            ),
        }
        for s in audiences.segments
    ]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _expression(node: Node, by_id: dict[str, Segment]) -> str:
    """The segment's condition as SQL over the per-person leaf flags `c<node>`."""
    if node.kind in COMBINATORS:
        parts = [_expression(c, by_id) for c in node.children]
        joined = (" and " if node.kind == "all" else " or ").join(parts)
        return f"(not ({joined}))" if node.kind == "none" else f"({joined})"
    if node.kind == "in_segment":
        return _expression(by_id[node.params["target_segment"]].where, by_id)
    return f"leaves.c{node.node_id}"


def _attribute_leaf(node: Node, catalog: dict[str, Attribute]) -> tuple[str, str]:
    p = node.params
    n = node.node_id
    attr = catalog[p["attribute"]]
    col = f"attrs.{_quote(attr.name)}"
    op = p["operator"]
    if attr.kind == "date":
        col = f"cast({col} as date)"
    if attr.kind == "text":
        col = f"lower({col})"
    value = {
        "numeric": f"prm.num_lo_{n}",
        "text": f"prm.text_value_{n}",
        "boolean": f"prm.bool_value_{n}",
        "date": f"prm.date_lo_{n}",
    }[attr.kind]
    if op == "is_null":
        test = f"(({col}) is null) = prm.bool_value_{n}"
    elif op == "between":
        hi = "prm.num_hi_" if attr.kind == "numeric" else "prm.date_hi_"
        test = f"{col} between {value} and {hi}{n}"
    elif op in ("in", "not_in"):
        lst = {"numeric": "num_list", "date": "date_list", "text": "text_list"}[attr.kind]
        test = f"list_contains(prm.{lst}_{n}, {col})"
        if op == "not_in":
            test = f"not {test}"
    else:
        test = f"{col} {SQL_COMPARISON[op]} {value}"
    observed = f"cast(attrs.{_quote(attr.name)} as varchar)"
    return f"coalesce({test}, false)", observed


PARAM_FIELDS = {
    "attribute": (
        "num_lo", "num_hi", "text_value", "bool_value", "date_lo", "date_hi",
        "num_list", "text_list", "date_list",
    ),
    "event": ("at_least", "at_most"),
    "session": ("at_least",),
}  # fmt: skip


@dataclass(frozen=True)
class CompiledAudiences:
    conditions: list[dict]
    leaves_sql: str
    matches_sql: str
    leaf_nodes: list[int]


def compile_audiences(audiences: Audiences, catalog: dict[str, Attribute] | None = None):
    """The condition rows and the SQL over them (see the module docstring)."""
    catalog = attribute_catalog() if catalog is None else catalog
    by_id = {s.segment_id: s for s in audiences.segments}
    leaves: list[Node] = []
    for seg in audiences.segments:
        leaves.extend(n for n in _walk(seg.where) if n.kind in ("attribute", "event", "session"))
    params, flags = [], []
    for node in leaves:
        n = node.node_id
        for name in PARAM_FIELDS[node.kind]:
            if node.kind == "attribute" and node.params.get(name) is None:
                continue
            params.append(f"max(c.{name}) filter (where c.node_id = {n}) as {name}_{n}")
        if node.kind == "attribute":
            test, observed = _attribute_leaf(node, catalog)
        else:
            count = f"coalesce(counts.n{n}, 0)"
            least = f"prm.at_least_{n}"
            if node.kind == "event":
                test = f"({count} >= {least} and {count} <= coalesce(prm.at_most_{n}, {count}))"
            else:
                test = f"({count} >= {least})"
            observed = f"cast({count} as varchar)"
        flags.append(f"{test} as c{n}")
        flags.append(f"{observed} as v{n}")
    counted = [n.node_id for n in leaves if n.kind in ("event", "session")]
    event_nodes = [
        n
        for seg in audiences.segments
        for n in _walk(seg.where)
        if n.kind in ("event", "session_event")
    ]
    pivots = [f"sum(n) filter (where node_id = {n}) as n{n}" for n in counted]
    sql = [
        "with",
        "conditions as (select * from __CONDITIONS__),",
        "prm as (",
        # an aggregate: one row even without conditions (count(*) when there is no parameter)
        "    select " + (",\n        ".join(params) if params else "count(*) as none_"),
        "    from conditions as c",
        "),",
        _event_sql(event_nodes),
        "counts as (",
        "    select person_id"
        + "".join(f",\n        {p}" for p in pivots)
        + "\n    from (select node_id, person_id, n from event_counts"
        "\n          union all select node_id, person_id, n from session_counts)"
        "\n    group by person_id",
        "),",
        "leaves as (",
        "    select attrs.*" + "".join(f",\n        {f}" for f in flags),
        "    from __ATTRIBUTES__ as attrs",
        "    cross join prm",
        "    left join counts on counts.person_id = attrs.person_id",
        ")",
    ]
    leaves_sql = "\n".join(sql)
    hits = []
    for seg in audiences.segments:
        score = f"cast(leaves.{_quote(seg.rank_by)} as double)"
        if catalog[seg.rank_by].kind == "date":
            score = f"cast(epoch(leaves.{_quote(seg.rank_by)}) as double)"
        sign = "-" if seg.rank_order == "asc" else ""
        hits.append(
            f"{{'segment_id': '{seg.segment_id}', "
            f"'hit': coalesce({_expression(seg.where, by_id)}, false), "
            f"'score': {score}, 'sort_key': {sign}{score}}}"
        )
    if hits:
        matches = (
            leaves_sql + "\nselect matched.person_id, matched.m.segment_id as segment_id,"
            "\n    matched.m.score as score, matched.m.sort_key as sort_key"
            "\nfrom (\n    select leaves.person_id, unnest(list_filter([\n        "
            + ",\n        ".join(hits)
            + "\n    ], lambda x: x.hit)) as m\n    from leaves\n) as matched"
        )
    else:
        matches = (
            "select cast(null as varchar) as person_id, cast(null as varchar) as segment_id, "
            "cast(null as double) as score, cast(null as double) as sort_key where false"
        )
    return CompiledAudiences(
        conditions=condition_rows(audiences),
        leaves_sql=leaves_sql,
        matches_sql=matches,
        leaf_nodes=[n.node_id for n in leaves],
    )


# Event filters a condition may set: (condition column, SQL over the event row `e`).
EVENT_FILTERS = {
    "sku": "e.sku = c.sku",
    "category": "e.category = c.category",
    "channel": "e.channel = c.channel",
    "device": "e.device = c.device",
    "page_contains": "contains(lower(e.page), c.page_contains)",
}


def _event_sql(event_nodes: list[Node]) -> str:
    """CTEs event_counts and session_counts (node_id, person_id, n).

    One pass over the events answers every event condition of every segment: the events join
    the conditions on their type, the other filters are data of the condition row; only the
    filters some condition uses are written. A session (web session_id, or a store basket)
    qualifies when each of its event conditions holds in it."""
    used = {key for node in event_nodes for key in EVENT_FILTERS if node.params.get(key)}
    has_events = any(n.kind == "event" for n in event_nodes)
    has_sessions = any(n.kind == "session_event" for n in event_nodes)
    filters = "".join(
        f"\n        and (c.{key} is null or {EVENT_FILTERS[key]})" for key in sorted(used)
    )
    empty = (
        "select cast(null as integer) as node_id, cast(null as varchar) as person_id, "
        "cast(null as bigint) as n where false"
    )
    parts = [
        """event_conditions as (
    select
        c.node_id,
        c.kind,
        c.parent_id,
        unnest(c.event_types) as event_type,
        c.sku,
        c.category,
        c.page_contains,
        c.channel,
        c.device,
        case
            when c.within_days is not null
                then cast(__AS_OF__ as timestamp) + interval 1 day - to_days(c.within_days)
            when c.date_lo is not null then cast(c.date_lo as timestamp)
        end as window_start,
        case
            when c.date_hi is not null
                then least(
                    cast(c.date_hi as timestamp) + interval 1 day,
                    cast(__AS_OF__ as timestamp) + interval 1 day
                )
            else cast(__AS_OF__ as timestamp) + interval 1 day
        end as window_end
    from conditions as c
    where c.kind in ('event', 'session_event')
),""",
        f"""matched_events as (
    select c.node_id, c.kind, e.person_id, e.session_id, e.event_key
    from __EVENTS__ as e
    inner join event_conditions as c on e.event_type = c.event_type
    where
        e.event_at < c.window_end
        and (c.window_start is null or e.event_at >= c.window_start){filters}
),""",
    ]
    if has_events:
        parts.append(
            """event_counts as (
    select node_id, person_id, count(distinct event_key) as n
    from matched_events
    where kind = 'event'
    group by node_id, person_id
),"""
        )
    else:
        parts.append(f"event_counts as ({empty}),")
    if has_sessions:
        parts.append(
            """session_hits as (
    select node_id, person_id, session_id, count(distinct event_key) as n
    from matched_events
    where kind = 'session_event' and session_id is not null
    group by node_id, person_id, session_id
),
session_rules as (
    select
        c.node_id,
        c.parent_id,
        c.at_least,
        c.at_most,
        count(*) filter (where c.at_least > 0) over (partition by c.parent_id) as required
    from conditions as c
    where c.kind = 'session_event'
),
session_checks as (
    select
        r.parent_id as node_id,
        h.person_id,
        h.session_id,
        max(r.required) as required,
        count(*) filter (
            where r.at_least > 0 and h.n >= r.at_least and h.n <= coalesce(r.at_most, h.n)
        ) as satisfied,
        count(*) filter (where h.n > coalesce(r.at_most, h.n)) as violated
    from session_hits as h
    inner join session_rules as r on h.node_id = r.node_id
    group by r.parent_id, h.person_id, h.session_id
),
session_counts as (
    select node_id, person_id, count(*) as n
    from session_checks
    where satisfied = required and violated = 0
    group by node_id, person_id
),"""
        )
    else:
        parts.append(f"session_counts as ({empty}),")
    return "\n".join(parts)


def render(sql: str, *, attributes: str, events: str, conditions: str, as_of: str) -> str:
    """The compiled SQL with its relations filled in (names or parenthesised queries)."""
    for token, value in (
        ("__ATTRIBUTES__", attributes),
        ("__EVENTS__", events),
        ("__CONDITIONS__", conditions),
        ("__AS_OF__", as_of),
    ):
        sql = sql.replace(token, value)
    return sql


def _arrow_table(rows: list[dict], columns: dict[str, str]):
    import pyarrow as pa

    types = {
        "INTEGER": pa.int32(),
        "DOUBLE": pa.float64(),
        "VARCHAR": pa.string(),
        "BOOLEAN": pa.bool_(),
        "DATE": pa.date32(),
        "DOUBLE[]": pa.list_(pa.float64()),
        "VARCHAR[]": pa.list_(pa.string()),
        "DATE[]": pa.list_(pa.date32()),
    }
    return pa.table(
        {name: pa.array([r.get(name) for r in rows], type=types[t]) for name, t in columns.items()}
    )


def write_audience_tables(
    con, audiences: Audiences, compiled: CompiledAudiences, min_size: int, holdout_share: float
) -> None:
    """Replace raw.audience_segments, raw.audience_conditions and raw.audience_sql in one
    transaction."""
    tables = {
        "audience_segments": _arrow_table(
            segment_rows(audiences, min_size, holdout_share), SEGMENT_COLUMNS
        ),
        "audience_conditions": _arrow_table(compiled.conditions, CONDITION_COLUMNS),
        "audience_sql": _arrow_table(
            [
                {"part": "matches", "sql": compiled.matches_sql},
                {"part": "leaves", "sql": compiled.leaves_sql},
            ],
            {"part": "VARCHAR", "sql": "VARCHAR"},
        ),
    }
    con.execute("create schema if not exists raw")
    con.execute("begin transaction")
    try:
        for name, table in tables.items():
            view = f"_audience_{name}"
            con.register(view, table)
            try:
                con.execute(f"create or replace table raw.{name} as select * from {view}")
            finally:
                con.unregister(view)
        con.execute("commit")
    except Exception:
        con.execute("rollback")
        raise
