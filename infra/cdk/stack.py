"""The production stack of the registration service.

Resources:

* Event-store tables (the source of truth; retained, PITR, deletion protection):
  ``<prefix>-events`` (stream events, the notification index and the sequence
  counter item), ``<prefix>-snapshots`` and ``<prefix>-tracking``.
* Read-model tables (rebuildable projections): ``<prefix>-users``,
  ``<prefix>-events-view`` and ``<prefix>-registrations`` (+ GSI
  ``eventId-userId-index``).
* The API: one Python Lambda running the FastAPI app through Mangum, behind an
  HTTP API (API Gateway v2) whose default route sends every path to it.
* A least-privilege role for the Lambda: explicit DynamoDB actions on explicit
  table ARNs only, plus the AWS managed basic execution policy for logs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from aws_cdk import CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_apigatewayv2 as apigwv2
from aws_cdk import aws_apigatewayv2_integrations as apigwv2_integrations
from aws_cdk import aws_dynamodb as dynamodb
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from constructs import Construct

DEFAULT_TABLE_PREFIX = "regsvc"
TABLE_PREFIX_CONTEXT_KEY = "tablePrefix"

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

#: Actions the event store needs. Appends are written with TransactWriteItems,
#: which DynamoDB authorises per contained action (Put / Update /
#: ConditionCheck), so ``dynamodb:TransactWriteItems`` itself is not needed.
EVENT_STORE_ACTIONS: tuple[str, ...] = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:Query",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)

#: Actions the projections and the query side need on the read-model tables.
READ_MODEL_ACTIONS: tuple[str, ...] = (
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "dynamodb:BatchGetItem",
    "dynamodb:BatchWriteItem",
    "dynamodb:ConditionCheckItem",
    "dynamodb:DescribeTable",
)

REGISTRATIONS_BY_EVENT_INDEX = "eventId-userId-index"

_TABLE_PREFIX_PATTERN = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


class RegistrationServiceStack(Stack):
    """DynamoDB tables, the API Lambda and its HTTP API.

    :param table_prefix: prefix of every table name; if omitted, the
        ``tablePrefix`` context value is used, else ``"regsvc"``.
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

        prefix = table_prefix or self._prefix_from_context()
        if not _TABLE_PREFIX_PATTERN.match(prefix):
            raise ValueError(f"invalid table prefix {prefix!r}: use letters, digits, '_', '-', '.'")
        self.table_prefix = prefix

        # --- Event store: the source of truth. Never deleted with the stack.
        self.events_table = self._event_store_table(
            "EventsTable",
            f"{prefix}-events",
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.NUMBER),
        )
        self.snapshots_table = self._event_store_table(
            "SnapshotsTable",
            f"{prefix}-snapshots",
            sort_key=dynamodb.Attribute(name="sk", type=dynamodb.AttributeType.NUMBER),
        )
        self.tracking_table = self._event_store_table(
            "TrackingTable", f"{prefix}-tracking", sort_key=None
        )
        event_store_tables = (
            self.events_table,
            self.snapshots_table,
            self.tracking_table,
        )

        # --- Read models. They are projections, rebuildable at any time by
        # replaying the event store, so RemovalPolicy.DESTROY is acceptable and
        # point-in-time recovery (a cost with no benefit here) stays off.
        self.users_table = self._read_model_table(
            "UsersTable",
            f"{prefix}-users",
            partition_key=dynamodb.Attribute(name="userId", type=dynamodb.AttributeType.STRING),
        )
        self.events_view_table = self._read_model_table(
            "EventsViewTable",
            f"{prefix}-events-view",
            partition_key=dynamodb.Attribute(name="eventId", type=dynamodb.AttributeType.STRING),
        )
        self.registrations_table = self._read_model_table(
            "RegistrationsTable",
            f"{prefix}-registrations",
            partition_key=dynamodb.Attribute(name="userId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="eventId", type=dynamodb.AttributeType.STRING),
        )
        self.registrations_table.add_global_secondary_index(
            index_name=REGISTRATIONS_BY_EVENT_INDEX,
            partition_key=dynamodb.Attribute(name="eventId", type=dynamodb.AttributeType.STRING),
            sort_key=dynamodb.Attribute(name="userId", type=dynamodb.AttributeType.STRING),
            projection_type=dynamodb.ProjectionType.ALL,
        )
        read_model_tables = (
            self.users_table,
            self.events_view_table,
            self.registrations_table,
        )

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
                            resources=_table_arns(event_store_tables),
                        ),
                        iam.PolicyStatement(
                            sid="ReadModelTables",
                            effect=iam.Effect.ALLOW,
                            actions=list(READ_MODEL_ACTIONS),
                            resources=[
                                *_table_arns(read_model_tables),
                                f"{self.registrations_table.table_arn}/index/*",
                            ],
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
            api_name=f"{prefix}-api",
            description="Registration service HTTP API",
            default_integration=apigwv2_integrations.HttpLambdaIntegration(
                "ApiLambdaIntegration", self.api_function
            ),
        )

        # --- Outputs.
        CfnOutput(self, "ApiUrl", value=self.http_api.api_endpoint, description="HTTP API URL")
        for output_id, table in (
            ("EventsTableName", self.events_table),
            ("SnapshotsTableName", self.snapshots_table),
            ("TrackingTableName", self.tracking_table),
            ("UsersTableName", self.users_table),
            ("EventsViewTableName", self.events_view_table),
            ("RegistrationsTableName", self.registrations_table),
        ):
            CfnOutput(self, output_id, value=table.table_name)

    def _prefix_from_context(self) -> str:
        value = self.node.try_get_context(TABLE_PREFIX_CONTEXT_KEY)
        if value is None:
            return DEFAULT_TABLE_PREFIX
        return str(value)

    def _event_store_table(
        self, construct_id: str, table_name: str, *, sort_key: dynamodb.Attribute | None
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            table_name=table_name,
            partition_key=dynamodb.Attribute(name="pk", type=dynamodb.AttributeType.STRING),
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            point_in_time_recovery_specification=dynamodb.PointInTimeRecoverySpecification(
                point_in_time_recovery_enabled=True
            ),
            deletion_protection=True,
            removal_policy=RemovalPolicy.RETAIN,
        )

    def _read_model_table(
        self,
        construct_id: str,
        table_name: str,
        *,
        partition_key: dynamodb.Attribute,
        sort_key: dynamodb.Attribute | None = None,
    ) -> dynamodb.Table:
        return dynamodb.Table(
            self,
            construct_id,
            table_name=table_name,
            partition_key=partition_key,
            sort_key=sort_key,
            billing_mode=dynamodb.BillingMode.PAY_PER_REQUEST,
            encryption=dynamodb.TableEncryption.AWS_MANAGED,
            # Rebuildable from the event store: see the comment above.
            removal_policy=RemovalPolicy.DESTROY,
        )


def default_lambda_code() -> lambda_.Code:
    """The API code: the repository root as an asset, minus dev-only paths.

    Third-party dependencies (FastAPI, eventsourcing, Mangum, ...) are not in
    the repository; they must be vendored into the asset (or a layer) by the
    build before deploying.
    """
    return lambda_.Code.from_asset(str(REPO_ROOT), exclude=list(LAMBDA_ASSET_EXCLUDES))


def _table_arns(tables: Sequence[dynamodb.Table]) -> list[str]:
    return [table.table_arn for table in tables]
