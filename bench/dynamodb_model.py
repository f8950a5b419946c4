"""Capacity model: how many registrations per second AWS would sustain, and what binds.

From a census of the partition keys one run wrote (``python -m
bench.dynamodb_census --json PATH``; its format is in that module), this
scales every key's write units to G gatherings with registrations spread
evenly over them, and sets each against AWS's published limits:

- a partition key takes at most 1,000 WCU/s and 3,000 RCU/s ("every partition
  ... is designed to deliver a maximum capacity of 3,000 read units per second
  and 1,000 write units per second", DynamoDB developer guide, "Best practices
  for designing and using partition keys effectively"). A GSI partition key is
  held to the same limits;
- a DynamoDB Stream shard is read at most at 1,000 records/s and 2 MB/s (Kinesis
  Data Streams' per-shard limits, which
  DynamoDB Streams' shards are read under through the Kinesis adapter);
- the indexer writes one index page at a time, one round trip each, a page
  holding at most ``page_events`` events.

How each census key is scaled (its *scope*, set by the census):

- ``gathering``: written by commands on one gathering only. With G gatherings
  each key carries 1/G of the registrations, so all the census's units of one
  (table, index) over the registrations, divided by G, land on each key (one
  key per gathering per table or index: if a gathering had several, each would
  carry less, so this errs on the safe side);
- ``user`` / ``registration``: one person's or one pair's key; any one of them
  carries a negligible share of the registrations, and no such key binds;
- ``global`` (and ``other``, counted the same way to err on the safe side) and
  ``indexer``: each key carries, at any G, its census share of all the
  registrations (a current index page or epoch key, the head item, a
  checkpoint). Keys of one family (the same text up to a ``#``: ``c#<commit>``,
  ``k#<shard>``) are shown as one row, bound by their busiest key.

The rate is in registrations per second *with the census's mix of other
commands* (the units of every command in the census are charged to its
registrations), so a census of registrations only gives the cost of one.

    python -m bench.dynamodb_model --census census.json [--json model.json]

For BENCHMARKS.md, ``section(build(census_from_json(data)))`` is the Markdown
section (``bench.report.markdown`` takes it among ``dynamodb_sections``), once
``make bench`` runs the census.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infra.dynamodb.pages import PAGE_MAX_EVENTS

PARTITION_WCU_PER_S = 1000.0
PARTITION_RCU_PER_S = 3000.0
SHARD_RECORDS_PER_S = 1000.0
SHARD_BYTES_PER_S = 2.0 * 1024 * 1024
GATHERINGS = (10, 100, 1000, 10000)
SCOPES = frozenset({"gathering", "user", "registration", "global", "indexer", "other"})
PER_PERSON = frozenset({"user", "registration"})
STREAM_TABLE = "registrations_events"


class CensusError(ValueError):
    """The census JSON lacks something the model needs."""


@dataclass(frozen=True)
class Partition:
    """One partition key a census run wrote (see bench.dynamodb_census)."""

    table: str
    index: str | None
    key: str
    scope: str
    path: str
    commands: int
    writes: int
    wcu: float
    rcu: float = 0.0


@dataclass(frozen=True)
class Census:
    """What the model reads of a census."""

    gatherings: int
    registrations: int
    events: int
    partitions: tuple[Partition, ...]

    @property
    def events_per_registration(self) -> float:
        return self.events / self.registrations


def census_from_json(data: Mapping[str, Any]) -> Census:
    """The census, from its JSON (raises CensusError when it cannot be modelled)."""
    try:
        registrations = int(data["registrations"])
        partitions = tuple(
            Partition(
                table=str(p["table"]),
                index=None if p.get("index") is None else str(p["index"]),
                key=str(p["key"]),
                scope=str(p["scope"]),
                path=str(p["path"]),
                commands=int(p["commands"]),
                writes=int(p["writes"]),
                wcu=float(p["wcu"]),
                rcu=float(p.get("rcu", 0.0)),
            )
            for p in data["partitions"]
        )
        census = Census(int(data["gatherings"]), registrations, int(data["events"]), partitions)
    except (KeyError, TypeError, ValueError) as error:
        raise CensusError(f"not a census: {error!r}") from error
    if registrations <= 0:
        raise CensusError("the census has no registrations to charge its units to")
    unknown = {p.scope for p in partitions} - SCOPES
    if unknown:
        raise CensusError(f"unknown scopes {sorted(unknown)} (known: {sorted(SCOPES)})")
    return census


def load_census(path: Path) -> Census:
    return census_from_json(json.loads(path.read_text()))


@dataclass(frozen=True)
class Assumptions:
    """What the model assumes beyond AWS's limits."""

    round_trip_ms: float = 10.0
    """One index page write: a DynamoDB round trip."""
    page_events: int = PAGE_MAX_EVENTS
    """Most events one index page holds: the indexer's own bound
    (``infra.dynamodb.pages.PAGE_MAX_EVENTS``; a page of references is one
    item, far under 400 KB at that size). The indexer before pages wrote each
    event's copy in one transaction: at most 100 items, about 98 events."""
    stream_table: str = STREAM_TABLE
    """The table whose DynamoDB Stream the indexer reads."""
    stream_shards: int | None = None
    """A fixed number of stream shards; None: one shard per 1,000 WCU/s the
    streamed table takes (see ``stream_bound``)."""


@dataclass(frozen=True)
class Bound:
    """One component and the registration rate at which it saturates."""

    component: str
    kind: str  # "partition" | "stream" | "indexer"
    scope: str  # a census scope, or "stream" / "indexer"
    path: str  # "request" | "indexer"
    units_per_registration: float
    """WCU (RCU for a read bound) one registration puts on the busiest key of
    this row, before dividing by G for a per-gathering key; records for the stream;
    events for the indexer."""
    rates: dict[int, float | None]
    """Registrations/s by G at which it saturates; None: never."""
    keys: int = 1
    note: str = ""


@dataclass(frozen=True)
class Level:
    gatherings: int
    registrations_per_s: float
    binding: str
    binding_kind: str
    binding_path: str
    next_bound: str | None
    next_rate: float | None


@dataclass
class Model:
    census: Census
    assumptions: Assumptions
    bounds: list[Bound]
    levels: list[Level] = field(default_factory=list)

    def bound(self, component: str) -> Bound:
        return next(b for b in self.bounds if b.component == component)


def _label(table: str, index: str | None) -> str:
    return table if index is None else f"{table} / {index}"


def _family(key: str) -> str:
    head, sep, _ = key.partition("#")
    return f"{head}#*" if sep else key


def partition_bounds(census: Census, gatherings: Sequence[int]) -> list[Bound]:
    """One row per (table, index) of per-gathering keys, per family of global,
    other or indexer keys, per (table, index) of per-person keys."""
    n = census.registrations
    groups: dict[tuple[str, str | None, str, str, str], list[Partition]] = {}
    for p in census.partitions:
        family = "" if p.scope in PER_PERSON or p.scope == "gathering" else _family(p.key)
        groups.setdefault((p.table, p.index, p.scope, p.path, family), []).append(p)
    bounds: list[Bound] = []
    for (table, index, scope, path, family), keys in sorted(
        groups.items(), key=lambda item: tuple(str(x) for x in item[0])
    ):
        label = _label(table, index)
        for unit, limit, per in (
            ("wcu", PARTITION_WCU_PER_S, ""),
            ("rcu", PARTITION_RCU_PER_S, " (reads)"),
        ):
            load = [getattr(p, unit) for p in keys]
            if not any(load):
                continue
            if scope == "gathering":
                # Every registration's units land on its own gathering's key;
                # G keys share the registrations evenly.
                per_registration = sum(load) / n
                rates: dict[int, float | None] = {
                    g: limit * g / per_registration for g in gatherings
                }
                component = f"{label}, per-gathering key{per}"
            elif scope in PER_PERSON:
                per_registration = max(load) / n
                rates = dict.fromkeys(gatherings)
                component = f"{label}, per-{scope} key{per}"
            else:
                # One key carries its census share of all registrations at any G.
                per_registration = max(load) / n
                rates = dict.fromkeys(gatherings, limit / per_registration)
                component = f'{label} "{family}"{per}'
            bounds.append(
                Bound(
                    component,
                    "partition",
                    scope,
                    path,
                    per_registration,
                    rates,
                    keys=len(keys),
                    note=f"{limit:,.0f} {unit.upper()}/s per partition key",
                )
            )
    return bounds


def stream_bound(census: Census, assumptions: Assumptions, gatherings: Sequence[int]) -> Bound:
    """The stream shards the indexer reads.

    Assumption: one shard per 1,000 WCU/s of the streamed table's writes. AWS
    documents that "shards are ephemeral: they are created and deleted
    automatically, as needed ... A shard might split in response to high
    levels of write activity on its parent table, so that applications can
    process records from multiple shards in parallel" (DynamoDB developer
    guide, "Change data capture for DynamoDB Streams"); AWS support describes
    a stream's shards as following the table's partitions, and a partition
    takes at most 1,000 WCU/s. Each item write is one stream record and costs
    at least 1 WCU, so a shard then gets at most 1,000 records/s: the stream
    binds only if records outnumber write units, or records are larger than
    2 KB per write unit. A record's size is taken as 1 KB per WCU of its
    write (an upper bound: a transactional write counts twice).
    """
    table = [
        p for p in census.partitions if p.table == assumptions.stream_table and p.index is None
    ]
    n = census.registrations
    records = sum(p.writes for p in table) / n
    wcu = sum(p.wcu for p in table) / n
    record_bytes = 1024.0 * wcu / records if records else 0.0
    if not records:
        rate: float | None = None
        note = f"no writes to {assumptions.stream_table} in the census"
    elif assumptions.stream_shards is not None:
        shards = assumptions.stream_shards
        rate = min(
            shards * SHARD_RECORDS_PER_S / records,
            shards * SHARD_BYTES_PER_S / (records * record_bytes),
        )
        note = f"{shards} shard(s), fixed"
    else:
        # At full partition load (1,000 WCU/s per shard), what one shard gets:
        per_shard_records = PARTITION_WCU_PER_S * records / wcu
        per_shard_bytes = per_shard_records * record_bytes
        limits: list[float] = []
        if per_shard_records > SHARD_RECORDS_PER_S:
            limits.append(SHARD_RECORDS_PER_S / records)
        if per_shard_bytes > SHARD_BYTES_PER_S:
            limits.append(SHARD_BYTES_PER_S / (records * record_bytes))
        rate = min(limits) if limits else None
        note = (
            f"one shard per 1,000 WCU/s of table writes: {per_shard_records:,.0f} records/s and "
            f"{per_shard_bytes / 1024 / 1024:.2f} MB/s per shard at most"
        )
    return Bound(
        f"{assumptions.stream_table} stream shards",
        "stream",
        "stream",
        "indexer",
        records,
        dict.fromkeys(gatherings, rate),
        note=note,
    )


def indexer_ceiling(census: Census, assumptions: Assumptions) -> tuple[float, float]:
    """(events/s, registrations/s) one indexer writing one page per round trip reaches."""
    events_per_s = assumptions.page_events * 1000.0 / assumptions.round_trip_ms
    return events_per_s, events_per_s / census.events_per_registration


def indexer_bound(census: Census, assumptions: Assumptions, gatherings: Sequence[int]) -> Bound:
    events_per_s, rate = indexer_ceiling(census, assumptions)
    return Bound(
        "indexer (one page per round trip)",
        "indexer",
        "indexer",
        "indexer",
        census.events_per_registration,
        dict.fromkeys(gatherings, rate),
        note=(
            f"{assumptions.page_events} events per page / {assumptions.round_trip_ms:g} ms = "
            f"{events_per_s:,.0f} events/s"
        ),
    )


def _order(rate: float | None) -> float:
    return math.inf if rate is None else rate


def build(
    census: Census,
    assumptions: Assumptions | None = None,
    gatherings: Sequence[int] = GATHERINGS,
) -> Model:
    """Every bound, and at each G the sustainable rate and what binds it."""
    assumptions = assumptions or Assumptions()
    bounds = [
        *partition_bounds(census, gatherings),
        stream_bound(census, assumptions, gatherings),
        indexer_bound(census, assumptions, gatherings),
    ]
    model = Model(census, assumptions, bounds)
    for g in gatherings:
        ranked = sorted(bounds, key=lambda b: _order(b.rates[g]))
        first = ranked[0]
        rate = first.rates[g]
        if rate is None:  # pragma: no cover - the indexer always binds somewhere
            raise CensusError("nothing bounds the rate")
        following = next((b for b in ranked[1:] if b.rates[g] is not None), None)
        model.levels.append(
            Level(
                g,
                rate,
                first.component,
                first.kind,
                first.path,
                None if following is None else following.component,
                None if following is None else following.rates[g],
            )
        )
    return model


def _rate(rate: float | None) -> str:
    return "never" if rate is None else f"{rate:,.0f}"


def how_to_pass_the_indexer(census: Census, assumptions: Assumptions) -> list[str]:
    events_per_s, rate = indexer_ceiling(census, assumptions)
    return [
        f"The indexer's own ceiling: {assumptions.page_events} events per page, one page per "
        f"{assumptions.round_trip_ms:g} ms round trip, is {events_per_s:,.0f} events/s, "
        f"{rate:,.0f} registrations/s at {census.events_per_registration:.2f} events per "
        "registration, whatever G. Ways past it:",
        "- bigger pages: a page of references (stream, version) in one item holds thousands "
        "(400 KB per item), so the ceiling grows with the page; the page's partition key then "
        "binds (1,000 WCU/s over its WCU per event), unless pages rotate over keys;",
        "- several logs hashed by stream: K indexers, each its own page sequence and key, "
        "each stream in one log (its order kept); a reader follows a vector of K positions. "
        "Ceiling x K, and K page keys share the write units.",
    ]


def markdown(model: Model) -> str:
    """The model as Markdown (two tables and the indexer's ceiling)."""
    census, assumptions = model.census, model.assumptions
    gs = [level.gatherings for level in model.levels]
    lines = [
        f"From a census of {census.registrations:,} registrations over {census.gatherings} "
        f"gatherings ({census.events_per_registration:.2f} events per registration, other "
        "commands charged to the registrations), at AWS's limits: 1,000 WCU/s and 3,000 "
        "RCU/s per partition key, 1,000 records/s and 2 MB/s per stream shard, one index page "
        f"of at most {assumptions.page_events} events per {assumptions.round_trip_ms:g} ms "
        "round trip (`python -m bench.dynamodb_model`).",
        "",
        "| gatherings | registrations/s | binds | next bound |",
        "|---|---|---|---|",
    ]
    for level in model.levels:
        following = (
            "-" if level.next_bound is None else f"{level.next_bound} ({_rate(level.next_rate)})"
        )
        lines.append(
            f"| {level.gatherings:,} | {level.registrations_per_s:,.0f} | {level.binding} | "
            f"{following} |"
        )
    lines += [
        "",
        "Registrations/s at which each component saturates (per-person keys never do). "
        "Units per registration: WCU (RCU for reads) on the row's busiest key, for a "
        "per-gathering key before the registrations are shared by G keys; stream records; "
        "events for the indexer:",
        "",
        "| component | scope | path | keys | units per registration | "
        + " | ".join(f"G={g:,}" for g in gs)
        + " |",
        "|---|---|---|---|---|" + "---|" * len(gs),
    ]
    ranked = sorted(model.bounds, key=lambda b: _order(b.rates[gs[-1]]))
    for b in ranked:
        if b.scope in PER_PERSON:
            continue
        lines.append(
            f"| {b.component} | {b.scope} | {b.path} | {b.keys} | "
            f"{b.units_per_registration:.3g} | " + " | ".join(_rate(b.rates[g]) for g in gs) + " |"
        )
    stream = next(b for b in model.bounds if b.kind == "stream")
    lines += [
        "",
        f"Stream: {stream.note} (a record taken as 1 KB per WCU of its write, an upper bound).",
        "",
        *how_to_pass_the_indexer(census, assumptions),
    ]
    return "\n".join(lines)


def section(model: Model) -> str:
    """The model's section for BENCHMARKS.md."""
    return "### Capacity model at AWS's limits\n\n" + markdown(model)


def to_json(model: Model) -> dict[str, Any]:
    events_per_s, rate = indexer_ceiling(model.census, model.assumptions)
    return {
        "census": {
            "gatherings": model.census.gatherings,
            "registrations": model.census.registrations,
            "events": model.census.events,
            "events_per_registration": model.census.events_per_registration,
        },
        "limits": {
            "partition_wcu_per_s": PARTITION_WCU_PER_S,
            "partition_rcu_per_s": PARTITION_RCU_PER_S,
            "shard_records_per_s": SHARD_RECORDS_PER_S,
            "shard_bytes_per_s": SHARD_BYTES_PER_S,
        },
        "assumptions": asdict(model.assumptions),
        "indexer": {"events_per_s": events_per_s, "registrations_per_s": rate},
        "levels": [asdict(level) for level in model.levels],
        "bounds": [
            {**asdict(b), "rates": {str(g): r for g, r in b.rates.items()}} for b in model.bounds
        ],
    }


def _gatherings(text: str) -> list[int]:
    values = [int(v.replace("_", "")) for v in text.split(",") if v.strip()]
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError("a comma-separated list of positive numbers")
    return values


def _parse(argv: Iterable[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.dynamodb_model", description=__doc__)
    parser.add_argument("--census", type=Path, required=True, help="census JSON to model")
    parser.add_argument("--json", type=Path, help="also write the model as JSON here")
    parser.add_argument("--round-trip-ms", type=float, default=Assumptions.round_trip_ms)
    parser.add_argument("--page-events", type=int, default=Assumptions.page_events)
    parser.add_argument("--stream-table", default=STREAM_TABLE)
    parser.add_argument("--stream-shards", type=int, default=None)
    parser.add_argument("--gatherings", type=_gatherings, default=list(GATHERINGS))
    return parser.parse_args(None if argv is None else list(argv))


def main(argv: Iterable[str] | None = None) -> int:
    args = _parse(argv)
    assumptions = Assumptions(
        round_trip_ms=args.round_trip_ms,
        page_events=args.page_events,
        stream_table=args.stream_table,
        stream_shards=args.stream_shards,
    )
    try:
        model = build(load_census(args.census), assumptions, args.gatherings)
    except CensusError as error:
        print(f"{args.census}: {error}", file=sys.stderr)
        return 2
    print(markdown(model))
    if args.json is not None:
        args.json.write_text(json.dumps(to_json(model), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
