"""Offline synthesis test of the production CDK stack.

The stack is synthesised once per module (jsii starts a node process, so each
synthesis costs time); no AWS credentials, lookups or network are needed.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip(
    "aws_cdk",
    reason="aws-cdk-lib is not installed: install the 'cdk' extra to run these tests",
)

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template

from infra.cdk.stack import (
    EVENT_STORE_ACTIONS,
    READ_MODEL_ACTIONS,
    REGISTRATIONS_BY_EVENT_INDEX,
    RegistrationServiceStack,
)

DUMMY_ENV = cdk.Environment(account="123456789012", region="eu-west-1")

EVENT_STORE_TABLES = ("regsvc-events", "regsvc-snapshots", "regsvc-tracking")
READ_MODEL_TABLES = ("regsvc-users", "regsvc-events-view", "regsvc-registrations")

Resource = dict[str, Any]


@pytest.fixture(scope="module")
def assembly_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cdk.out")


@pytest.fixture(scope="module")
def template(assembly_dir: Path) -> Template:
    """The production stack as deployed, with the real code asset of the repo root."""
    app = cdk.App(outdir=str(assembly_dir))
    stack = RegistrationServiceStack(app, "RegistrationService", env=DUMMY_ENV)
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, Resource]:
    resources: dict[str, Resource] = template.to_json()["Resources"]
    return resources


def tables_by_name(resources: dict[str, Resource]) -> dict[str, Resource]:
    return {
        resource["Properties"]["TableName"]: resource
        for resource in resources.values()
        if resource["Type"] == "AWS::DynamoDB::Table"
    }


def logical_id_of_table(resources: dict[str, Resource], table_name: str) -> str:
    (logical_id,) = (
        logical_id
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::DynamoDB::Table"
        and resource["Properties"]["TableName"] == table_name
    )
    return logical_id


def policy_statements(node: Any) -> Iterator[dict[str, Any]]:
    """Every IAM policy statement anywhere in the given template fragment."""
    if isinstance(node, dict):
        statements = node.get("Statement")
        if isinstance(statements, list):
            yield from (s for s in statements if isinstance(s, dict))
        elif isinstance(statements, dict):
            yield statements
        for value in node.values():
            yield from policy_statements(value)
    elif isinstance(node, list):
        for value in node:
            yield from policy_statements(value)


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def statement_with_sid(resources: dict[str, Resource], sid: str) -> dict[str, Any]:
    (statement,) = (s for s in policy_statements(resources) if s.get("Sid") == sid)
    return statement


def test_all_six_tables_are_defined_with_the_default_prefix(
    resources: dict[str, Resource],
) -> None:
    assert sorted(tables_by_name(resources)) == sorted(
        EVENT_STORE_TABLES + READ_MODEL_TABLES
    )


def test_event_store_tables_have_point_in_time_recovery_and_deletion_protection(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in EVENT_STORE_TABLES:
        properties = tables[name]["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }, name
        assert properties["DeletionProtectionEnabled"] is True, name


def test_event_store_tables_are_retained_when_deleted_or_replaced(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in EVENT_STORE_TABLES:
        assert tables[name]["DeletionPolicy"] == "Retain", name
        assert tables[name]["UpdateReplacePolicy"] == "Retain", name


def test_every_table_is_billed_on_demand_and_encrypted(
    resources: dict[str, Resource],
) -> None:
    for name, table in tables_by_name(resources).items():
        assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST", name
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name


def test_event_store_tables_have_the_keys_the_store_expects(template: Template) -> None:
    for name in ("regsvc-events", "regsvc-snapshots"):
        template.has_resource_properties(
            "AWS::DynamoDB::Table",
            {
                "TableName": name,
                "KeySchema": [
                    {"AttributeName": "pk", "KeyType": "HASH"},
                    {"AttributeName": "sk", "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": Match.array_equals(
                    [
                        {"AttributeName": "pk", "AttributeType": "S"},
                        {"AttributeName": "sk", "AttributeType": "N"},
                    ]
                ),
            },
        )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-tracking",
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
        },
    )


def test_read_tables_are_rebuildable_so_destroyable_and_without_point_in_time_recovery(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in READ_MODEL_TABLES:
        assert tables[name]["DeletionPolicy"] == "Delete", name
        assert "PointInTimeRecoverySpecification" not in tables[name]["Properties"], (
            name
        )
        assert not tables[name]["Properties"].get("DeletionProtectionEnabled", False), (
            name
        )


def test_read_tables_have_their_keys(template: Template) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-users",
            "KeySchema": [{"AttributeName": "userId", "KeyType": "HASH"}],
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-events-view",
            "KeySchema": [{"AttributeName": "eventId", "KeyType": "HASH"}],
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-registrations",
            "KeySchema": [
                {"AttributeName": "userId", "KeyType": "HASH"},
                {"AttributeName": "eventId", "KeyType": "RANGE"},
            ],
        },
    )


def test_registrations_table_has_the_event_id_user_id_global_secondary_index(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-registrations",
            "GlobalSecondaryIndexes": [
                {
                    "IndexName": REGISTRATIONS_BY_EVENT_INDEX,
                    "KeySchema": [
                        {"AttributeName": "eventId", "KeyType": "HASH"},
                        {"AttributeName": "userId", "KeyType": "RANGE"},
                    ],
                    "Projection": {"ProjectionType": "ALL"},
                }
            ],
        },
    )
    assert REGISTRATIONS_BY_EVENT_INDEX == "eventId-userId-index"


def test_no_iam_statement_grants_a_wildcard_action(
    resources: dict[str, Resource],
) -> None:
    statements = list(policy_statements(resources))
    assert statements, "expected IAM policy statements in the template"
    for statement in statements:
        assert "NotAction" not in statement, statement
        for action in as_list(statement.get("Action", [])):
            assert action not in ("*", "dynamodb:*"), statement
            assert not (isinstance(action, str) and action.endswith(":*")), statement


def test_no_dynamodb_statement_applies_to_every_resource(
    resources: dict[str, Resource],
) -> None:
    dynamodb_statements = [
        statement
        for statement in policy_statements(resources)
        if any(
            isinstance(action, str) and action.startswith("dynamodb:")
            for action in as_list(statement.get("Action", []))
        )
    ]
    assert dynamodb_statements, "expected DynamoDB statements in the template"
    for statement in dynamodb_statements:
        assert "NotResource" not in statement, statement
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement


def test_lambda_role_may_use_only_the_needed_actions_on_the_event_store_tables(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "EventStoreTables")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        [
            "dynamodb:GetItem",
            "dynamodb:PutItem",
            "dynamodb:Query",
            "dynamodb:ConditionCheckItem",
            "dynamodb:UpdateItem",
            "dynamodb:DescribeTable",
        ]
    )
    assert sorted(statement["Action"]) == sorted(EVENT_STORE_ACTIONS)
    assert statement["Resource"] == [
        {"Fn::GetAtt": [logical_id_of_table(resources, name), "Arn"]}
        for name in EVENT_STORE_TABLES
    ]


def test_lambda_role_may_read_and_write_the_read_tables_and_the_registrations_index(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "ReadModelTables")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(READ_MODEL_ACTIONS)
    assert "dynamodb:Scan" not in statement["Action"]
    registrations_arn = {
        "Fn::GetAtt": [logical_id_of_table(resources, "regsvc-registrations"), "Arn"]
    }
    assert statement["Resource"] == [
        *(
            {"Fn::GetAtt": [logical_id_of_table(resources, name), "Arn"]}
            for name in READ_MODEL_TABLES
        ),
        {"Fn::Join": ["", [registrations_arn, "/index/*"]]},
    ]


def test_lambda_role_has_only_the_managed_basic_execution_policy(
    template: Template,
) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": Match.object_like(
                {
                    "Statement": [
                        Match.object_like(
                            {"Principal": {"Service": "lambda.amazonaws.com"}}
                        )
                    ]
                }
            ),
            "ManagedPolicyArns": [
                {
                    "Fn::Join": [
                        "",
                        [
                            "arn:",
                            {"Ref": "AWS::Partition"},
                            ":iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
                        ],
                    ]
                }
            ],
        },
    )


def test_api_lambda_runs_the_mangum_handler_against_the_dynamodb_store(
    template: Template,
) -> None:
    template.resource_count_is("AWS::Lambda::Function", 1)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "api.lambda_handler.handler",
            "Runtime": "python3.11",
            "MemorySize": 512,
            "Timeout": 30,
            "Environment": {
                "Variables": {
                    "STORE": "dynamodb",
                    "DYNAMODB_TABLE_PREFIX": "regsvc",
                    "ENVIRONMENT": "production",
                }
            },
        },
    )


def test_lambda_code_asset_holds_the_runtime_packages_and_no_dev_files(
    resources: dict[str, Resource], assembly_dir: Path
) -> None:
    (function,) = (
        r for r in resources.values() if r["Type"] == "AWS::Lambda::Function"
    )
    asset_hash = function["Properties"]["Code"]["S3Key"].removesuffix(".zip")
    asset = assembly_dir / f"asset.{asset_hash}"
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}

    assert "api/lambda_handler.py" in files
    for package in ("api", "domain", "projections", "infra"):
        assert f"{package}/__init__.py" in files, package
    for excluded in (".venv", ".git", ".tools", "tests", "data", "bench", "cdk.out"):
        assert not (asset / excluded).exists(), excluded
    assert not (asset / "infra" / "cdk").exists()
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_an_http_api_routes_every_path_to_the_lambda(template: Template) -> None:
    template.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    template.has_resource_properties("AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP"})
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Route", {"RouteKey": "$default"}
    )
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"},
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com"},
    )


def test_outputs_include_the_api_url_and_table_names(template: Template) -> None:
    outputs: dict[str, Any] = template.to_json()["Outputs"]
    assert {
        "ApiUrl",
        "EventsTableName",
        "SnapshotsTableName",
        "TrackingTableName",
        "UsersTableName",
        "EventsViewTableName",
        "RegistrationsTableName",
    } <= set(outputs)
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::GetAtt": [
            next(iter(template.find_resources("AWS::ApiGatewayV2::Api"))),
            "ApiEndpoint",
        ]
    }


def test_table_prefix_can_be_set_through_the_context() -> None:
    # A second, cheaper synthesis: inline stand-in code, no asset staging.
    app = cdk.App(context={"tablePrefix": "staging"})
    stack = RegistrationServiceStack(
        app,
        "PrefixedStack",
        env=DUMMY_ENV,
        lambda_code=lambda_.Code.from_inline(
            "def handler(event, context):\n    return {}\n"
        ),
    )
    prefixed = Template.from_stack(stack)

    names = sorted(
        resource["Properties"]["TableName"]
        for resource in prefixed.find_resources("AWS::DynamoDB::Table").values()
    )
    assert names == sorted(
        name.replace("regsvc-", "staging-", 1)
        for name in EVENT_STORE_TABLES + READ_MODEL_TABLES
    )
    prefixed.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Environment": {
                "Variables": Match.object_like({"DYNAMODB_TABLE_PREFIX": "staging"})
            }
        },
    )


def test_an_invalid_table_prefix_is_rejected() -> None:
    with pytest.raises(ValueError, match="invalid table prefix"):
        RegistrationServiceStack(
            cdk.App(),
            "BadPrefix",
            table_prefix="no spaces allowed",
            lambda_code=lambda_.Code.from_inline(
                "def handler(event, context):\n    return {}\n"
            ),
        )
