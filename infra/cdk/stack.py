"""The production stack of the registration service.

Resources (``<p>`` is the table prefix, default ``regsvc-``, prepended verbatim
exactly as the service does with ``DYNAMODB_TABLE_PREFIX``):

* Event-store tables, the source of truth (retained, PITR, deletion
  protection). The service's eventsourcing application is named
  "Registrations", so ``infra.dynamodb``'s factory uses
  ``<p>registrations_events`` (``oid`` S / ``ver`` N; one item per event,
  appended conditionally on its own stream's version only, with a DynamoDB
  Stream of new images), ``<p>registrations_snapshots`` (``oid`` S / ``ver`` N)
  and ``<p>registrations_notifications`` (``p`` S / ``id`` N), the *index*: the
  notification log as pages of references (``p="page"``) and shard
  checkpoints (item layout in ``infra/dynamodb/layout.py`` and
  ``infra/dynamodb/pages.py``). No item is written
  by every command: the global order is assigned afterwards by the indexer.
  The ``_tracking`` table of eventsourcing's tracking/process recorders is not
  defined: the service does not use them.
* Read tables, rebuildable projections (``python -m api.cli rebuild``):
  ``<p>users`` (``userId``), ``<p>events`` (``eventId``; GSI
  ``listing-eventId-status-index``, keys and ``status`` only),
  ``<p>registrations`` (``userId`` / ``eventId``; GSI ``eventId-order-index``)
  and ``<p>projection_state`` (``pk``); string keys. With the context value
  ``keepRetiredIndexes=true`` the tables also keep the GSIs an earlier version
  defined (``retired_indexes``): the first of the two deployments that replace
  a GSI (README, "Tables, keys and conditions").
* The API: one Python Lambda running the FastAPI app through Mangum, behind an
  HTTP API (API Gateway v2) whose default route sends every path to it. It
  appends events and reads the index, never writes it (``DYNAMODB_INDEXER=false``:
  no in-process indexer).
* The indexer: a second Python Lambda (``api.indexer_lambda.handler``) fed by an
  event source mapping on the events table's stream. It builds the index with
  ``infra.dynamodb.indexer.StreamIndexer``; the mapping keeps its position in
  each shard, retries a failed batch until it succeeds and never skips one
  (see ``_indexer_mapping``). An alarm fires when the oldest record not yet
  indexed is older than :data:`INDEXER_ITERATOR_AGE_ALARM`.
* One least-privilege role per Lambda: explicit DynamoDB actions on explicit
  table (and stream) ARNs only, plus the AWS managed basic execution policy for
  logs. The actions are listed, with the reason for each, in
  :mod:`infra.cdk.design`.

The table designs are written out (:mod:`infra.cdk.design`) rather than
imported from the storage code, so that synthesising needs none of the runtime
dependencies; the tests compare them with what the code creates
(``read_table_specs`` and the recorders' ``table_specs``) and with the DynamoDB
calls the code makes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

from infra.cdk.design import (
    API_EVENT_TABLE_ACTIONS,
    API_INDEX_TABLE_ACTIONS,
    APPLICATION_NAME,
    EVENT_STORE_TABLES,
    EVENTS_IN_ID_ORDER_INDEX,
    EVENTS_TABLE,
    IDEMPOTENCY_ACTIONS,
    IDEMPOTENCY_TABLE,
    INDEX_TABLE,
    INDEXER_EVENT_TABLE_ACTIONS,
    INDEXER_INDEX_TABLE_ACTIONS,
    INDEXER_READ_TABLE_ACTIONS,
    INDEXER_STREAM_ACTIONS,
    KEY_TABLE_ACTIONS,
    KEYS_TABLE,
    READ_MODEL_ACTIONS,
    READ_MODEL_INDEX_ACTIONS,
    READ_TABLES,
    REGISTRATIONS_IN_EVENT_ORDER_INDEX,
    SNAPSHOTS_TABLE,
    IndexDesign,
    KeyType,
    TableDesign,
)

__all__ = [
    "API_EVENT_TABLE_ACTIONS",
    "API_INDEX_TABLE_ACTIONS",
    "APPLICATION_NAME",
    "DEFAULT_TABLE_PREFIX",
    "EVENTS_IN_ID_ORDER_INDEX",
    "EVENT_STORE_TABLES",
    "IDEMPOTENCY_ACTIONS",
    "IDEMPOTENCY_TABLE",
    "INDEXER_EVENT_TABLE_ACTIONS",
    "INDEXER_INDEX_TABLE_ACTIONS",
    "INDEXER_READ_TABLE_ACTIONS",
    "INDEXER_STREAM_ACTIONS",
    "KEYS_TABLE",
    "KEY_TABLE_ACTIONS",
    "READ_MODEL_ACTIONS",
    "READ_MODEL_INDEX_ACTIONS",
    "READ_TABLES",
    "REGISTRATIONS_IN_EVENT_ORDER_INDEX",
    "RegistrationServiceStack",
    "TableDesign",
]

#: ``Settings.dynamodb_table_prefix``'s default (infra/settings.py).
DEFAULT_TABLE_PREFIX = "regsvc-"
TABLE_PREFIX_CONTEXT_KEY = "tablePrefix"
#: Context key: "true" keeps the retired GSIs beside their replacements.
KEEP_RETIRED_INDEXES_CONTEXT_KEY = "keepRetiredIndexes"
#: ``Settings.dynamodb_table_prefix``'s pattern: what the service accepts.
_TABLE_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{0,100}$")

#: Root of the repository: the Lambda code asset is built from it.
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Paths (relative to the repository root) left out of the Lambda code asset.
LAMBDA_ASSET_EXCLUDES: tuple[str, ...] = (
    ".venv",
    ".git",
    ".ci",
    ".tools",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
    "tests",
    "data",
    "docs",
    "bench",
    "build",
    # infra/ holds runtime code (settings, DynamoDB store, wiring): only the
    # CDK app is left out.
    "infra/cdk",
    "cdk.out",
    "node_modules",
    "__pycache__",
    "*.pyc",
    "*.egg-info",
)

LAMBDA_HANDLER = "api.lambda_handler.handler"
INDEXER_HANDLER = "api.indexer_lambda.handler"

#: Stream records per indexer invocation: about what one index transaction
#: holds (100 items: an event's notification, one marker per commit, the
#: head), so a batch is a few transactions, well inside the timeout, and a
#: failed batch costs little to redo.
INDEXER_BATCH_SIZE = 100
INDEXER_TIMEOUT = Duration.seconds(60)
#: Concurrent indexer invocations at most (and always available: reserved).
#: Every index transaction moves the one head item, so index transactions
#: commit one at a time whatever the concurrency: more concurrent invocations
#: (one per shard) add no throughput, only transactions cancelled by the head
#: condition and retried. Two keep one invocation working while another waits
#: on DynamoDB, and bound that waste; shards beyond two take turns (a throttled
#: batch is retried, never skipped). Reserving also means the API's bursts
#: cannot take the account's concurrency from the indexer and stall the feed.
#: AWS refuses a reservation that leaves an account under 100 unreserved
#: executions: pass ``indexer_reserved_concurrency=None`` on such accounts.
INDEXER_RESERVED_CONCURRENCY = 2
#: The feed is normally indexed within a second; a stuck batch (retried, never
#: skipped) shows as a growing iterator age. Records leave the stream after 24
#: hours, so this leaves ample time to act.
INDEXER_ITERATOR_AGE_ALARM = Duration.minutes(5)

_ATTRIBUTE_TYPES: dict[KeyType, dynamodb.AttributeType] = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: tuple[str, KeyType]) -> dynamodb.Attribute:
    name, key_type = key
    return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[key_type])


def _basic_execution_policy() -> iam.IManagedPolicy:
    return iam.ManagedPolicy.from_aws_managed_policy_name(
        "service-role/AWSLambdaBasicExecutionRole"
    )


class RegistrationServiceStack(Stack):
    """DynamoDB tables, the API Lambda and its HTTP API, the indexer Lambda.

    :param table_prefix: prepended verbatim to every table name and passed to
        the Lambdas as ``DYNAMODB_TABLE_PREFIX``; if omitted, the
        ``tablePrefix`` context value is used, else ``"regsvc-"``.
    :param lambda_code: code of both Lambdas; defaults to an asset built from
        the repository root (minus :data:`LAMBDA_ASSET_EXCLUDES`). Tests may
        pass a small stand-in to keep synthesis fast.
    :param indexer_reserved_concurrency: see
        :data:`INDEXER_RESERVED_CONCURRENCY`; None reserves nothing.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table_prefix: str | None = None,
        lambda_code: lambda_.Code | None = None,
        indexer_reserved_concurrency: int | None = INDEXER_RESERVED_CONCURRENCY,
        keep_retired_indexes: bool | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        prefix = table_prefix if table_prefix is not None else self._prefix_from_context()
        if not _TABLE_PREFIX_PATTERN.match(prefix):
            raise ValueError(
                f"invalid table prefix {prefix!r}: use at most 100 letters, digits, '_', '-', '.'"
            )
        self.table_prefix = prefix
        if keep_retired_indexes is None:
            keep_retired_indexes = str(
                self.node.try_get_context(KEEP_RETIRED_INDEXES_CONTEXT_KEY)
            ).lower() in ("true", "1")
        self.keep_retired_indexes = keep_retired_indexes
        code = lambda_code or default_lambda_code()

        # --- Event store: the source of truth. Never deleted with the stack.
        self.event_store_tables: dict[str, dynamodb.Table] = {
            design.table_name(prefix): self._event_store_table(design, prefix)
            for design in EVENT_STORE_TABLES
        }
        self.events_table = self.event_store_tables[EVENTS_TABLE.table_name(prefix)]
        self.snapshots_table = self.event_store_tables[SNAPSHOTS_TABLE.table_name(prefix)]
        self.index_table = self.event_store_tables[INDEX_TABLE.table_name(prefix)]
        events_stream_arn = self.events_table.table_stream_arn
        if events_stream_arn is None:  # pragma: no cover - EVENTS_TABLE has a stream
            raise ValueError("the events table needs its stream")

        # --- Read tables. They are projections, rebuildable at any time by
        # replaying the event store, so RemovalPolicy.DESTROY is acceptable and
        # point-in-time recovery (a cost with no benefit here) stays off.
        self.read_tables: dict[str, dynamodb.Table] = {
            design.table_name(prefix): self._read_table(design, prefix) for design in READ_TABLES
        }
        indexed_tables = [
            self.read_tables[design.table_name(prefix)] for design in READ_TABLES if design.indexes
        ]
        # --- Idempotency-Key records: short-lived (24 h), expired by the TTL.
        self.idempotency_table = self._read_table(IDEMPOTENCY_TABLE, prefix)
        # --- The users' data keys: retained, and without backups (design.py).
        self.keys_table = dynamodb.Table(
            self,
            KEYS_TABLE.construct_id,
            table_name=KEYS_TABLE.table_name(prefix),
            partition_key=_attribute(KEYS_TABLE.partition_key),
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

        # --- Least-privilege roles: explicit actions on explicit ARNs. The
        # table.grant_* helpers are avoided on purpose: in aws-cdk-lib 2.275
        # grant_read_write_data also emits dynamodb:Scan, DeleteItem and the
        # Batch* actions (unwanted on the append-only event store) plus the
        # streams actions GetRecords/GetShardIterator on the table ARN, and
        # grant_stream_read grants dynamodb:ListStreams on "*". For the same
        # reason the mapping is not made with DynamoEventSource, which calls
        # grant_stream_read.
        self.api_role = iam.Role(
            self,
            "ApiFunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Role of the registration service API Lambda",
            managed_policies=[_basic_execution_policy()],
            inline_policies={
                "DynamoDbAccess": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="EventStoreTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(API_EVENT_TABLE_ACTIONS),
                            resources=_table_arns([self.events_table, self.snapshots_table]),
                        ),
                        iam.PolicyStatement(
                            sid="IndexTableReadOnly",
                            effect=iam.Effect.ALLOW,
                            actions=list(API_INDEX_TABLE_ACTIONS),
                            resources=_table_arns([self.index_table]),
                        ),
                        iam.PolicyStatement(
                            sid="ReadTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(READ_MODEL_ACTIONS),
                            resources=_table_arns(list(self.read_tables.values())),
                        ),
                        iam.PolicyStatement(
                            sid="IdempotencyTable",
                            effect=iam.Effect.ALLOW,
                            actions=list(IDEMPOTENCY_ACTIONS),
                            resources=_table_arns([self.idempotency_table]),
                        ),
                        iam.PolicyStatement(
                            sid="KeyTable",
                            effect=iam.Effect.ALLOW,
                            actions=list(KEY_TABLE_ACTIONS),
                            resources=_table_arns([self.keys_table]),
                        ),
                        iam.PolicyStatement(
                            sid="ReadTableIndexes",
                            effect=iam.Effect.ALLOW,
                            actions=list(READ_MODEL_INDEX_ACTIONS),
                            resources=[f"{table.table_arn}/index/*" for table in indexed_tables],
                        ),
                    ]
                )
            },
        )
        self.indexer_role = iam.Role(
            self,
            "IndexerFunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Role of the registration service stream indexer Lambda",
            managed_policies=[_basic_execution_policy()],
            inline_policies={
                "DynamoDbAccess": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="IndexerEventsStream",
                            effect=iam.Effect.ALLOW,
                            actions=list(INDEXER_STREAM_ACTIONS),
                            resources=[events_stream_arn],
                        ),
                        iam.PolicyStatement(
                            sid="IndexerEventsTableRead",
                            effect=iam.Effect.ALLOW,
                            actions=list(INDEXER_EVENT_TABLE_ACTIONS),
                            resources=_table_arns([self.events_table]),
                        ),
                        iam.PolicyStatement(
                            sid="IndexerIndexTable",
                            effect=iam.Effect.ALLOW,
                            actions=list(INDEXER_INDEX_TABLE_ACTIONS),
                            resources=_table_arns([self.index_table]),
                        ),
                        iam.PolicyStatement(
                            sid="IndexerReadTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(INDEXER_READ_TABLE_ACTIONS),
                            resources=_table_arns(list(self.read_tables.values())),
                        ),
                    ]
                )
            },
        )

        # --- The API Lambda.
        self.api_function = self._python_function(
            "ApiFunction",
            description="Registration service HTTP API (FastAPI via Mangum)",
            handler=LAMBDA_HANDLER,
            code=code,
            memory_size=512,
            timeout=Duration.seconds(30),
            role=self.api_role,
            # The indexer Lambda builds the index: no poller thread here.
            environment={"DYNAMODB_INDEXER": "false"},
        )

        # --- The indexer Lambda, fed by the events table's stream.
        self.indexer_function = self._python_function(
            "IndexerFunction",
            description="Registration service stream indexer (builds the notification log)",
            handler=INDEXER_HANDLER,
            code=code,
            memory_size=256,
            timeout=INDEXER_TIMEOUT,
            role=self.indexer_role,
            reserved_concurrent_executions=indexer_reserved_concurrency,
        )
        self.indexer_mapping = self._indexer_mapping(events_stream_arn)
        self.indexer_iterator_age_alarm = cloudwatch.Alarm(
            self,
            "IndexerIteratorAgeAlarm",
            alarm_description=(
                "The stream indexer is behind: a batch keeps failing (it is retried, never "
                "skipped) or the indexer cannot keep up. Its log says why. Stream records "
                "expire after 24 hours."
            ),
            metric=self.indexer_function.metric(
                "IteratorAge", statistic="Maximum", period=Duration.minutes(1)
            ),
            threshold=INDEXER_ITERATOR_AGE_ALARM.to_milliseconds(),
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            evaluation_periods=1,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
        )

        # --- HTTP API: the $default route sends every method and path to the Lambda.
        self.http_api = apigwv2.HttpApi(
            self,
            "HttpApi",
            api_name=f"{prefix}api",
            description="Registration service HTTP API",
            default_integration=apigwv2_integrations.HttpLambdaIntegration(
                "ApiLambdaIntegration", self.api_function
            ),
        )

        # --- Outputs.
        CfnOutput(self, "ApiUrl", value=self.http_api.api_endpoint, description="HTTP API URL")
        all_tables = {
            **self.event_store_tables,
            **self.read_tables,
            IDEMPOTENCY_TABLE.table_name(prefix): self.idempotency_table,
            KEYS_TABLE.table_name(prefix): self.keys_table,
        }
        for design in (*EVENT_STORE_TABLES, *READ_TABLES, IDEMPOTENCY_TABLE, KEYS_TABLE):
            table = all_tables[design.table_name(prefix)]
            CfnOutput(self, f"{design.construct_id}Name", value=table.table_name)

    def _indexer_mapping(self, stream_arn: str) -> lambda_.CfnEventSourceMapping:
        """The event source mapping from the events table's stream to the indexer.

        Written with the L1 construct so that every retry setting is explicit in
        the template (the L2 one cannot say "retry forever": it leaves these
        out, to CloudFormation's defaults).
        """
        return lambda_.CfnEventSourceMapping(
            self,
            "IndexerStreamMapping",
            function_name=self.indexer_function.function_name,
            event_source_arn=stream_arn,
            # Every event ever appended: a new mapping (or a re-created one)
            # starts with the oldest record the stream holds, not the newest.
            # Records already indexed are recognised (each event's head bound
            # ``h`` and the pages after it) and cost no second position.
            starting_position="TRIM_HORIZON",
            batch_size=INDEXER_BATCH_SIZE,
            # WHY retry forever: a skipped record's commit would be missing from
            # the feed (a hole for every catch-up reader, rebuild and audit)
            # until a later write to one of its streams pulled it in, out of
            # place: after events appended later. So a failing batch is retried
            # until it succeeds; its shard waits meanwhile (the iterator-age
            # alarm says so). No record age limit, no on-failure destination:
            # the mapping never drops a record (only the stream's own 24-hour
            # retention could, hence the alarm).
            maximum_retry_attempts=-1,
            maximum_record_age_in_seconds=-1,
            # A failing batch is split in halves and retried. Safe: the indexer
            # reads the rest of a commit, and a stream's earlier commits, from
            # the table, so any subset of records indexes the same way. Useful:
            # a batch failing because of one record narrows down to that record
            # (its sequence number in the log) while the others get indexed.
            bisect_batch_on_function_error=True,
            # The handler raises on failure rather than reporting partial
            # failures (api/indexer_lambda.py says why): no FunctionResponseTypes.
            # One batch per shard at a time: records reach the indexer in
            # stream order, and one shard's batches do not race each other for
            # the head item (more would add contention, not throughput).
            parallelization_factor=1,
            enabled=True,
        )

    def _python_function(
        self,
        construct_id: str,
        *,
        environment: dict[str, str] | None = None,
        **options: Any,
    ) -> lambda_.Function:
        """A Python 3.11 Lambda on the DynamoDB store, with its own log group
        (a month's retention)."""
        log_group = logs.LogGroup(
            self,
            f"{construct_id}Logs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        return lambda_.Function(
            self,
            construct_id,
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            log_group=log_group,
            environment={
                "STORE": "dynamodb",
                "DYNAMODB_TABLE_PREFIX": self.table_prefix,
                "ENVIRONMENT": "production",
                **(environment or {}),
            },
            **options,
        )

    def _prefix_from_context(self) -> str:
        value = self.node.try_get_context(TABLE_PREFIX_CONTEXT_KEY)
        if value is None:
            return DEFAULT_TABLE_PREFIX
        return str(value)

    def _event_store_table(self, design: TableDesign, prefix: str) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            design.construct_id,
            table_name=design.table_name(prefix),
            partition_key=_attribute(design.partition_key),
            sort_key=_attribute(design.sort_key) if design.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            # The indexer's input: every appended event item, as written.
            stream=dynamodb.StreamViewType.NEW_IMAGE if design.stream else None,
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _read_table(self, design: TableDesign, prefix: str) -> dynamodb.Table:
        table = dynamodb.Table(
            self,
            design.construct_id,
            table_name=design.table_name(prefix),
            partition_key=_attribute(design.partition_key),
            sort_key=_attribute(design.sort_key) if design.sort_key else None,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Rebuildable from the event store (or, for idempotency records,
            # short-lived): see the comment above.
            removal_policy=RemovalPolicy.DESTROY,
            time_to_live_attribute=design.ttl_attribute,
        )
        retired = design.retired_indexes if self.keep_retired_indexes else ()
        for index in (*design.indexes, *retired):
            table.add_global_secondary_index(**_index_properties(index))
        return table


def default_lambda_code() -> lambda_.Code:
    """The code of both Lambdas: the repository root as an asset, minus dev-only paths.

    Third-party dependencies (FastAPI, eventsourcing, Mangum, ...) are not in
    the repository; they must be vendored into the asset (or a layer) by the
    build before deploying.
    """
    return lambda_.Code.from_asset(str(REPO_ROOT), exclude=list(LAMBDA_ASSET_EXCLUDES))


def _index_properties(index: IndexDesign) -> dict[str, Any]:
    properties: dict[str, Any] = {
        "index_name": index.name,
        "partition_key": _attribute(index.partition_key),
        "sort_key": _attribute(index.sort_key),
        "projection_type": dynamodb.ProjectionType.ALL,
    }
    if index.projection == "INCLUDE":
        properties["projection_type"] = dynamodb.ProjectionType.INCLUDE
        properties["non_key_attributes"] = list(index.attributes)
    return properties


def _table_arns(tables: Sequence[dynamodb.Table]) -> list[str]:
    return [table.table_arn for table in tables]
