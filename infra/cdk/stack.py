"""The production stack of the registration service.

Resources (``<p>`` is the table prefix, default ``regsvc-``, prepended verbatim
exactly as the service does with ``DYNAMODB_TABLE_PREFIX``):

* Event-store tables, the source of truth (retained, PITR, deletion
  protection). The service's eventsourcing application is named
  "Registrations", so ``infra.dynamodb``'s factory uses
  ``<p>registrations_events`` (``oid`` S / ``ver`` N),
  ``<p>registrations_snapshots`` (``oid`` S / ``ver`` N) and
  ``<p>registrations_notifications`` (``p`` S / ``id`` N: the notification log
  and its sequence-counter item). The ``_tracking`` table of eventsourcing's
  tracking/process recorders is not defined: the service does not use them.
* Read tables, rebuildable projections (``python -m api.cli rebuild``):
  ``<p>users`` (``userId``), ``<p>events`` (``eventId``; GSI
  ``listing-eventId-index``), ``<p>registrations`` (``userId`` / ``eventId``;
  GSI ``eventId-order-index``) and ``<p>projection_state`` (``pk``); string
  keys.
* The API: one Python Lambda running the FastAPI app through Mangum, behind an
  HTTP API (API Gateway v2) whose default route sends every path to it.
* A least-privilege role for the Lambda: explicit DynamoDB actions on explicit
  table ARNs only, plus the AWS managed basic execution policy for logs.

The table designs below are written out rather than imported from the storage
code, so that synthesising needs none of the runtime dependencies; the tests
compare them with what the code creates (``read_table_specs`` and the
recorders' ``table_specs``) and with the DynamoDB calls the code makes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

#: ``Settings.dynamodb_table_prefix``'s default (infra/settings.py).
DEFAULT_TABLE_PREFIX = "regsvc-"
TABLE_PREFIX_CONTEXT_KEY = "tablePrefix"
#: ``Settings.dynamodb_table_prefix``'s pattern: what the service accepts.
_TABLE_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{0,100}$")

#: Name of the eventsourcing application (``infra.service``), lower-cased by
#: the DynamoDB factory into the event-store table names.
APPLICATION_NAME = "Registrations"

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

KeyType = Literal["S", "N", "B"]


@dataclass(frozen=True)
class TableDesign:
    """Name (without the prefix), keys and GSIs of one table.

    ``indexes`` holds ``(name, partition key, sort key)``; GSIs project ALL
    attributes.
    """

    construct_id: str
    suffix: str
    partition_key: tuple[str, KeyType]
    sort_key: tuple[str, KeyType] | None = None
    indexes: tuple[tuple[str, tuple[str, KeyType], tuple[str, KeyType]], ...] = ()

    def table_name(self, prefix: str) -> str:
        return f"{prefix}{self.suffix}"


_APP = APPLICATION_NAME.lower()

#: infra/dynamodb/recorders.py: events and snapshots keyed by (oid S, ver N),
#: the notification log by (p S, id N).
EVENT_STORE_TABLES: tuple[TableDesign, ...] = (
    TableDesign("StoredEventsTable", f"{_APP}_events", ("oid", "S"), ("ver", "N")),
    TableDesign("SnapshotsTable", f"{_APP}_snapshots", ("oid", "S"), ("ver", "N")),
    TableDesign("NotificationsTable", f"{_APP}_notifications", ("p", "S"), ("id", "N")),
)

EVENTS_IN_ID_ORDER_INDEX = "listing-eventId-index"
REGISTRATIONS_IN_EVENT_ORDER_INDEX = "eventId-order-index"

#: infra/dynamodb/read_tables.py (``read_table_specs``): every key is a string.
READ_TABLES: tuple[TableDesign, ...] = (
    TableDesign("UsersTable", "users", ("userId", "S")),
    TableDesign(
        "EventsViewTable",
        "events",
        ("eventId", "S"),
        indexes=((EVENTS_IN_ID_ORDER_INDEX, ("listing", "S"), ("eventId", "S")),),
    ),
    TableDesign(
        "RegistrationsTable",
        "registrations",
        ("userId", "S"),
        ("eventId", "S"),
        indexes=((REGISTRATIONS_IN_EVENT_ORDER_INDEX, ("eventId", "S"), ("eventOrder", "S")),),
    ),
    TableDesign("ProjectionStateTable", "projection_state", ("pk", "S")),
)

#: Actions the event store's recorders call (infra/dynamodb). Appends are
#: TransactWriteItems of Put and Update items; DynamoDB authorises a
#: transaction per contained action, so ``dynamodb:TransactWriteItems`` itself
#: is not an IAM action. DescribeTable: the start-up check that the tables
#: exist. No CreateTable: the stack creates the tables, and the code only
#: creates one that DescribeTable reports missing. No ConditionCheckItem,
#: DeleteItem or Batch*: the recorders never use them.
EVENT_STORE_ACTIONS: tuple[str, ...] = (
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
)

#: Actions the projector and the query side call on the read tables
#: (infra/dynamodb/read_tables.py): batches commit as TransactWriteItems of
#: Put, Update and Delete items; events are listed by querying a GSI, titles
#: fetched with BatchGetItem. Scan and BatchWriteItem are only used by
#: ``reset`` (``python -m api.cli rebuild``, run by an operator, never by the
#: Lambda), so they are not granted; nor is CreateTable (see above).
READ_MODEL_ACTIONS: tuple[str, ...] = (
    "dynamodb:DescribeTable",
    "dynamodb:GetItem",
    "dynamodb:BatchGetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
)

#: Actions on the read tables' GSIs (events, registrations): only queries.
READ_MODEL_INDEX_ACTIONS: tuple[str, ...] = ("dynamodb:Query",)

_ATTRIBUTE_TYPES: dict[KeyType, dynamodb.AttributeType] = {
    "S": dynamodb.AttributeType.STRING,
    "N": dynamodb.AttributeType.NUMBER,
    "B": dynamodb.AttributeType.BINARY,
}


def _attribute(key: tuple[str, KeyType]) -> dynamodb.Attribute:
    name, key_type = key
    return dynamodb.Attribute(name=name, type=_ATTRIBUTE_TYPES[key_type])


class RegistrationServiceStack(Stack):
    """DynamoDB tables, the API Lambda and its HTTP API.

    :param table_prefix: prepended verbatim to every table name and passed to
        the Lambda as ``DYNAMODB_TABLE_PREFIX``; if omitted, the
        ``tablePrefix`` context value is used, else ``"regsvc-"``.
    :param lambda_code: code of the API Lambda; defaults to an asset built from
        the repository root (minus :data:`LAMBDA_ASSET_EXCLUDES`). Tests may
        pass a small stand-in to keep synthesis fast.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        table_prefix: str | None = None,
        lambda_code: lambda_.Code | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)

        prefix = table_prefix if table_prefix is not None else self._prefix_from_context()
        if not _TABLE_PREFIX_PATTERN.match(prefix):
            raise ValueError(
                f"invalid table prefix {prefix!r}: use at most 100 letters, digits, '_', '-', '.'"
            )
        self.table_prefix = prefix

        # --- Event store: the source of truth. Never deleted with the stack.
        self.event_store_tables: dict[str, dynamodb.Table] = {
            design.table_name(prefix): self._event_store_table(design, prefix)
            for design in EVENT_STORE_TABLES
        }

        # --- Read tables. They are projections, rebuildable at any time by
        # replaying the event store, so RemovalPolicy.DESTROY is acceptable and
        # point-in-time recovery (a cost with no benefit here) stays off.
        self.read_tables: dict[str, dynamodb.Table] = {
            design.table_name(prefix): self._read_table(design, prefix) for design in READ_TABLES
        }
        indexed_tables = [
            self.read_tables[design.table_name(prefix)] for design in READ_TABLES if design.indexes
        ]

        # --- Least-privilege role: explicit actions on explicit ARNs. The
        # table.grant_* helpers are avoided on purpose: in aws-cdk-lib 2.275
        # grant_read_write_data also emits dynamodb:Scan, DeleteItem and the
        # Batch* actions (unwanted on the append-only event store) plus the
        # streams actions GetRecords/GetShardIterator (no streams here).
        self.api_role = iam.Role(
            self,
            "ApiFunctionRole",
            assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
            description="Role of the registration service API Lambda",
            managed_policies=[
                iam.ManagedPolicy.from_aws_managed_policy_name(
                    "service-role/AWSLambdaBasicExecutionRole"
                )
            ],
            inline_policies={
                "DynamoDbAccess": iam.PolicyDocument(
                    statements=[
                        iam.PolicyStatement(
                            sid="EventStoreTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(EVENT_STORE_ACTIONS),
                            resources=_table_arns(list(self.event_store_tables.values())),
                        ),
                        iam.PolicyStatement(
                            sid="ReadTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(READ_MODEL_ACTIONS),
                            resources=_table_arns(list(self.read_tables.values())),
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

        # --- The API Lambda.
        log_group = logs.LogGroup(
            self,
            "ApiFunctionLogs",
            retention=logs.RetentionDays.ONE_MONTH,
            removal_policy=RemovalPolicy.DESTROY,
        )
        self.api_function = lambda_.Function(
            self,
            "ApiFunction",
            description="Registration service HTTP API (FastAPI via Mangum)",
            runtime=lambda_.Runtime.PYTHON_3_11,
            architecture=lambda_.Architecture.X86_64,
            handler=LAMBDA_HANDLER,
            code=lambda_code or default_lambda_code(),
            memory_size=512,
            timeout=Duration.seconds(30),
            role=self.api_role,
            log_group=log_group,
            environment={
                "STORE": "dynamodb",
                "DYNAMODB_TABLE_PREFIX": prefix,
                "ENVIRONMENT": "production",
            },
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
        all_tables = {**self.event_store_tables, **self.read_tables}
        for design in (*EVENT_STORE_TABLES, *READ_TABLES):
            table = all_tables[design.table_name(prefix)]
            CfnOutput(self, f"{design.construct_id}Name", value=table.table_name)

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
            # Rebuildable from the event store: see the comment above.
            removal_policy=RemovalPolicy.DESTROY,
        )
        for index_name, partition_key, sort_key in design.indexes:
            table.add_global_secondary_index(
                index_name=index_name,
                partition_key=_attribute(partition_key),
                sort_key=_attribute(sort_key),
                projection_type=dynamodb.ProjectionType.ALL,
            )
        return table


def default_lambda_code() -> lambda_.Code:
    """The API code: the repository root as an asset, minus dev-only paths.

    Third-party dependencies (FastAPI, eventsourcing, Mangum, ...) are not in
    the repository; they must be vendored into the asset (or a layer) by the
    build before deploying.
    """
    return lambda_.Code.from_asset(str(REPO_ROOT), exclude=list(LAMBDA_ASSET_EXCLUDES))


def _table_arns(tables: Sequence[dynamodb.Table]) -> list[str]:
    return [table.table_arn for table in tables]
