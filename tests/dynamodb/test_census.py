"""The census: no partition key every command writes, and an index within its budget.

Registrations spread over G gatherings (some with a few seats and a waitlist),
leaves with and without a promotion and capacity raises run through the real
service on DynamoDB Local; every write call is recorded and costed by AWS's
rule (``bench.dynamodb_census``): 1,000 registrations over 50 gatherings, as
the benchmark runs it (about 40 s on DynamoDB Local). The capacity model
(``bench.dynamodb_model``) is then built from this very census.
"""

from __future__ import annotations

from typing import Any

import pytest

from bench.dynamodb_census import (
    Workload,
    WriteRecorder,
    census,
    index_costs,
    run_service,
    shared_keys,
    table,
)
from bench.dynamodb_model import build, census_from_json

WORKLOAD = Workload()
INDEX_BUDGET = 0.1  # WCU per indexed event, all the index's partitions together

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def recorder(dynamodb_endpoint: str) -> WriteRecorder:
    return run_service(dynamodb_endpoint, WORKLOAD)


@pytest.fixture(scope="module")
def result(recorder: WriteRecorder) -> dict[str, Any]:
    found = census(recorder, WORKLOAD)
    print(table(found))
    return found


def test_every_write_the_service_meters_is_in_the_census(recorder: WriteRecorder) -> None:
    """The census hooks the service's clients; its own meter counts on every client
    it instruments. Were one of them missed, the two would differ."""
    metered = sum(units for units, _ in recorder.metered.values())
    assert recorder.process_writes == pytest.approx(metered, abs=0.05)
    assert metered > 0


def test_the_census_counts_every_command_and_event(result: dict[str, Any]) -> None:
    by_command = result["by_command"]
    assert by_command["register"] == WORKLOAD.registrations == result["registrations"]
    assert by_command["create event"] == WORKLOAD.gatherings
    assert by_command["create user"] == WORKLOAD.users
    assert result["commands"] == sum(by_command.values())
    indexer = result["indexer"]
    assert indexer["events"] == result["events"]
    assert indexer["wcu"] > 0  # the indexer's writes were seen


def test_no_request_path_partition_key_is_written_by_more_than_2_in_g_of_the_commands(
    result: dict[str, Any],
) -> None:
    """Every command of the workload is spread G ways or more: a gathering's
    commands (create, register, leave, capacity raise) round-robin over the G
    gatherings, a user's (create user, and the user's side of a registration)
    over at least G users. So in a design whose every partition key belongs to
    one gathering, one user or one registration, no key is written by more
    than about 1/G of all commands (a gathering's own share). A key written by
    more than 2/G of all the commands is shared beyond any one gathering's or
    user's share: on AWS it caps the whole service at its partition's 1,000
    WCU/s whatever G is. Base-table keys and GSI partitions (from the index key
    of every entry written) alike."""
    limit = 2 / WORKLOAD.gatherings
    shared = shared_keys(result, limit)
    n = result["commands"]
    assert not shared, "request-path keys written by more than 2/G of the commands: " + "; ".join(
        f"{p['table']}{'/' + p['index'] if p['index'] else ''} key={p['key']!r} "
        f"({p['commands']} of {n} commands, {p['wcu']} WCU)"
        for p in shared
    )


def test_the_index_costs_at_most_a_tenth_of_a_write_unit_per_indexed_event(
    result: dict[str, Any],
) -> None:
    indexer = result["indexer"]
    assert indexer["wcu_per_event"] <= INDEX_BUDGET, (
        f"the index costs {indexer['wcu_per_event']} WCU per indexed event "
        f"(budget {INDEX_BUDGET}); by partition key: "
        + ", ".join(f"{key} {units:.3f}" for key, units in index_costs(result))
    )


def test_the_model_of_this_census_sustains_5000_registrations_a_second_at_1000_gatherings(
    result: dict[str, Any],
) -> None:
    """At AWS's per-partition limits (1,000 WCU/s a key), with registrations
    spread over G gatherings, the rate this census's writes allow grows with G
    until a bound that no gathering shares (the index's page key, the
    indexer's one page per round trip) binds it; a key every command writes
    would hold it flat at any G."""
    model = build(census_from_json(result))
    rates = {level.gatherings: level.registrations_per_s for level in model.levels}
    assert rates[1000] >= 5000, model.levels
    assert rates[10] <= rates[100] <= rates[1000] <= rates[10000], model.levels
    assert rates[10] < rates[1000], "the rate does not grow with G: " + str(model.levels)
