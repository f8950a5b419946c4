"""Exceptions of the DynamoDB persistence module, and the mapping of boto3/botocore
errors onto eventsourcing's PEP 249 style persistence exceptions.

The mapping is applied at the boundary (every client call goes through
:func:`translate_errors`), so callers only ever see subclasses of
:class:`eventsourcing.persistence.PersistenceError`:

======================================================  ==========================
boto3 / botocore                                        eventsourcing
======================================================  ==========================
ConditionalCheckFailedException,                        IntegrityError
TransactionCanceled[ConditionalCheckFailed]
throttling after botocore retries, TransactionConflict,  OperationalError
InternalServerError, connection errors and timeouts
(EndpointConnectionError, ConnectTimeoutError,
ReadTimeoutError, ...)
ValidationException about sizes or values               DataError
other ValidationException, ResourceNotFoundException    ProgrammingError
(missing table)
other botocore errors (no credentials, no region, ...)  InterfaceError
======================================================  ==========================
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    HTTPClientError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from eventsourcing.persistence import (
    DataError,
    IntegrityError,
    InterfaceError,
    InternalError,
    OperationalError,
    PersistenceError,
    ProgrammingError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


class DynamoDBLimitError(DataError):
    """A write would exceed a DynamoDB limit. It was refused before anything
    was sent to DynamoDB, so nothing has been written.
    """


class TooManyEventsError(DynamoDBLimitError):
    """More events in one call than fit in one DynamoDB transaction
    (at most 100 items per TransactWriteItems).
    """


class EventTooLargeError(DynamoDBLimitError):
    """A stored event is too large for one DynamoDB item (400 KB hard limit;
    this module refuses items estimated above its safety margin).
    """


class TransactionTooLargeError(DynamoDBLimitError):
    """The events together are too large for one DynamoDB transaction
    (4 MB aggregate item size).
    """


class AppendContentionError(OperationalError):
    """Gave up appending after too many transient cancellations (another
    transaction kept holding one of the items; throttling). Nothing was
    written; the caller may retry.
    """


class IndexContentionError(OperationalError):
    """The stream indexer gave up writing the index after bounded retries
    (throttling, transaction conflicts). Nothing was half-written; indexing the
    same records again continues where it stopped.
    """


class IndexOrderError(InternalError):
    """The events table holds two commits that each hold an earlier version of
    a stream than the other: no order of the index can respect both streams
    (only a writer that bypassed optimistic concurrency can cause this).
    """


class HistoryChangedError(IntegrityError):
    """Raised when ``regsvc seal-names`` finds an event item changed (or gone)
    since it read it: nothing of that stream was rewritten; run it again, with
    the service stopped.
    """


class NotificationLogCorruptedError(InternalError):
    """The notification log is inconsistent with its head (e.g. the head item
    was deleted or restored from an older backup), or a commit's events are
    missing from the events table.
    """


THROTTLING_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "ThrottlingError",
        "ProvisionedThroughputExceeded",
        "TooManyRequestsException",
    }
)

TRANSIENT_CODES = THROTTLING_CODES | frozenset(
    {
        "InternalServerError",
        "InternalFailure",
        "ServiceUnavailable",
        "TransactionConflictException",
        "TransactionInProgressException",
        "TransactionConflict",
        "LimitExceededException",
    }
)

CONDITION_FAILED_CODES = frozenset({"ConditionalCheckFailedException", "ConditionalCheckFailed"})


def error_code(e: ClientError) -> str:
    code: str = e.response.get("Error", {}).get("Code", "")
    return code


def cancellation_reasons(e: ClientError) -> list[dict[str, Any]]:
    """Returns the CancellationReasons of a TransactionCanceledException
    (one entry per TransactItem, in request order), or an empty list.
    """
    reasons: Any = e.response.get("CancellationReasons")
    if isinstance(reasons, list):
        return reasons
    return []


def translate(e: Exception) -> PersistenceError:  # noqa: PLR0911 (a mapping table)
    """Maps a boto3/botocore exception to an eventsourcing PersistenceError."""
    if isinstance(e, PersistenceError):
        return e
    if isinstance(e, ClientError):
        code = error_code(e)
        message = f"DynamoDB {code}: {e}"
        if code in CONDITION_FAILED_CODES:
            return IntegrityError(message)
        if code == "TransactionCanceledException":
            codes = {r.get("Code") for r in cancellation_reasons(e)}
            if codes & CONDITION_FAILED_CODES:
                return IntegrityError(message)
            if "ValidationError" in codes:
                return DataError(message)
            return OperationalError(message)
        if code in TRANSIENT_CODES:
            return OperationalError(message)
        if code == "ValidationException":
            text = str(e).lower()
            if "size" in text or "value" in text or "empty" in text:
                return DataError(message)
            return ProgrammingError(message)
        if code in ("ResourceNotFoundException", "ResourceInUseException"):
            return ProgrammingError(message)
        if code in (
            "UnrecognizedClientException",
            "AccessDeniedException",
            "InvalidSignatureException",
            "MissingAuthenticationToken",
            "ExpiredTokenException",
        ):
            return OperationalError(message)
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if status >= 500:
            return OperationalError(message)
        return ProgrammingError(message)
    if isinstance(e, (BotoConnectionError, HTTPClientError)):
        # EndpointConnectionError, ConnectTimeoutError, ReadTimeoutError,
        # ConnectionClosedError, ProxyConnectionError, ...
        return OperationalError(f"DynamoDB unreachable: {e}")
    if isinstance(e, BotoCoreError):
        return InterfaceError(f"DynamoDB client error: {e}")
    return InterfaceError(f"Unexpected error: {e!r}")


@contextmanager
def translate_errors() -> Iterator[None]:
    """Re-raises boto3/botocore exceptions as eventsourcing PersistenceErrors."""
    try:
        yield
    except (BotoCoreError, ClientError) as e:
        raise translate(e) from e
