"""A simulated network round trip for benchmarks: every DynamoDB call waits.

DynamoDB Local runs on the machine that sends it requests, so a call costs the
CPU of client and engine but no network: one writer is then as busy as the
cores, and no design can show that it scales. On AWS a call also waits for the
network (a few ms in a region, more across regions), and a writer that waits
leaves the cores to others. :func:`add_simulated_latency` makes a boto3 client
sleep before each HTTP send (botocore's retries included, as each is a round
trip of its own), so that writers wait as they would on AWS and designs
separate by how many round trips they make in turn, and how many they share.

A benchmark tool only: the service applies it when the setting
``DYNAMODB_SIMULATED_LATENCY_MS`` is above 0 (default 0), and so does the
state-based baseline (``bench/baseline/dynamodb.py``) from the same environment variable.
"""

from __future__ import annotations

import time
from typing import Any

ENV_VAR = "DYNAMODB_SIMULATED_LATENCY_MS"
"""The environment variable (and setting) that switches the delay on, in ms."""

_UNIQUE_ID = "regsvc-simulated-latency"


def add_simulated_latency(client: Any, milliseconds: float) -> None:
    """Makes every request ``client`` sends (a DynamoDB or DynamoDB Streams
    client) wait ``milliseconds`` first; 0 or less: nothing changes.

    Registered on the client's own event hooks (``before-send.<service>``), so
    other clients are not affected; registering again on the same client
    replaces the earlier delay.
    """
    if milliseconds <= 0:
        return
    seconds = milliseconds / 1000.0

    def wait_for_the_network(**_: Any) -> None:
        time.sleep(seconds)
        # None: botocore goes on to send the request itself.

    service = client.meta.service_model.service_id.hyphenize()
    event = f"before-send.{service}"
    client.meta.events.unregister(event, unique_id=_UNIQUE_ID)
    client.meta.events.register(event, wait_for_the_network, unique_id=_UNIQUE_ID)


def latency_from_env(environ: Any) -> float:
    """The delay in ms named by :data:`ENV_VAR` in ``environ`` (0 when unset)."""
    value = str(environ.get(ENV_VAR) or "").strip()
    if not value:
        return 0.0
    try:
        milliseconds = float(value)
    except ValueError:
        msg = f"{ENV_VAR} must be a number of milliseconds: {value!r}"
        raise ValueError(msg) from None
    if not 0 <= milliseconds <= 1000:
        msg = f"{ENV_VAR} must be between 0 and 1000 ms: {value!r}"
        raise ValueError(msg)
    return milliseconds
