"""make bench checks that the service's GET /metrics counted the requests it sent."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import httpx
import pytest

from bench import __main__ as bench_main
from bench.load import Sizes
from bench.metrics_check import MetricsWatch, Tally, Templates, compare, counted
from bench.servers import SERVICE, Server

TINY = Sizes(churn_ops=40, churn_users=6, churn_events=2, churn_capacity=2, churn_clients=4)


def test_paths_map_to_the_route_templates_the_service_labels_them_with() -> None:
    templates = Templates(
        ["/events", "/events/{eventId}", "/users/{userId}/registrations/{eventId}"]
    )

    assert templates.route("/events?status=active&limit=20") == "/events"
    assert templates.route("/events/e-1") == "/events/{eventId}"
    assert templates.route("/users/u-1/registrations/e-1") == (
        "/users/{userId}/registrations/{eventId}"
    )
    assert templates.route("/events/e-1/more") == "unmatched"


def test_the_counts_are_read_by_route_method_and_status_from_a_scrape() -> None:
    text = (
        "# TYPE regsvc_http_requests_total counter\n"
        'regsvc_http_requests_total{method="GET",route="/events",status="200"} 3.0\n'
        'regsvc_http_requests_total{method="POST",route="/events",status="201"} 2.0\n'
        'regsvc_commands_total{command="register",outcome="confirmed"} 9.0\n'
    )

    assert counted(text) == Counter({("/events", "GET", "200"): 3, ("/events", "POST", "201"): 2})


def test_the_comparison_names_each_difference_and_counts_a_request_left_unanswered() -> None:
    tally = Tally(Templates(["/events"]))
    tally.record("GET", "/events", 200)
    tally.sent = 2  # one of them got no answer
    before = Counter({("/events", "GET", "200"): 5})
    after = Counter({("/events", "GET", "200"): 7})

    comparison = compare(before, after, tally)

    assert comparison.differences == {("/events", "GET", "200"): (1, 2)}
    assert comparison.unanswered == 1
    assert not comparison.ok


@pytest.mark.processes
@pytest.mark.sqlite_pass
@pytest.mark.xdist_group("servers")
def test_a_bench_run_against_the_service_finds_every_request_it_sent_counted(
    tmp_path: Path,
) -> None:
    result = bench_main._run_one("sqlite", "churn", "service", 1, TINY, tmp_path, None)

    assert result.outcome.checks["metrics_count_the_requests_sent"], result.outcome.failures
    store, scenario, _, comparison = bench_main.METRICS_COUNTS[-1]
    assert (store, scenario) == ("sqlite", "churn")
    assert comparison.ok
    # Setup, the 40 timed requests, the checks and the drain, all counted.
    assert comparison.total_sent() == comparison.total_metered() > TINY.churn_ops
    assert comparison.sent[("/users/{userId}/registrations", "POST", "201")] > 0


@pytest.mark.processes
@pytest.mark.sqlite_pass
@pytest.mark.xdist_group("servers")
def test_a_request_the_bench_did_not_count_fails_the_comparison(tmp_path: Path) -> None:
    server = Server(SERVICE, "sqlite", tmp_path)
    try:
        watch = MetricsWatch(server.url, settle_tries=2, settle_pause=0.0)
        assert httpx.get(f"{server.url}/health", trust_env=False).status_code == 200
        comparison = watch.finish()
    finally:
        server.stop()

    assert not comparison.ok
    assert comparison.differences == {("/health", "GET", "200"): (0, 1)}
    assert "DIFFERENT" in comparison.summary()
