"""Offline synthesis test of the production CDK stack.

The stack is synthesised once per module (jsii starts a node process, so each
synthesis costs time); no AWS credentials, lookups or network are needed.

The expected tables and IAM actions are derived from the storage code itself,
so these tests break when the code and the stack drift apart:

* the tables (names, keys, GSIs) are the ones the service creates at start-up
  when the tables are missing, recorded by running the real wiring
  (``build_container``) against a stand-in DynamoDB client configured with the
  Lambda's own environment variables;
* the read tables are compared with ``read_table_specs`` as well;
* the IAM actions are the DynamoDB calls found in the storage modules' source
  (the API's, and the stream indexer's table by table). The tests on DynamoDB
  Local (tests/test_indexer_lambda.py) check them once more against the calls
  the code really makes.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

pytest.importorskip(
    "aws_cdk",
    reason="aws-cdk-lib is not installed: install the 'cdk' extra to run these tests",
)

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk.assertions import Match, Template
from botocore.exceptions import ClientError

from api import indexer_lambda
from infra import wiring
from infra.cdk.app import STACK_NAME, build_app
from infra.cdk.design import (
    API_EVENT_TABLE_ACTIONS,
    API_INDEX_TABLE_ACTIONS,
    IDEMPOTENCY_ACTIONS,
    INDEXER_EVENT_TABLE_ACTIONS,
    INDEXER_INDEX_TABLE_ACTIONS,
    INDEXER_READ_TABLE_ACTIONS,
    INDEXER_STREAM_ACTIONS,
    KEY_TABLE_ACTIONS,
    KEYS_TABLE,
    TRANSACT_ITEM_ACTIONS,
    WRITE_ACTIONS,
)
from infra.cdk.stack import (
    APPLICATION_NAME,
    DEFAULT_TABLE_PREFIX,
    EVENT_STORE_TABLES,
    EVENTS_IN_ID_ORDER_INDEX,
    IDEMPOTENCY_TABLE,
    INDEXER_HANDLER,
    LAMBDA_HANDLER,
    READ_MODEL_ACTIONS,
    READ_MODEL_INDEX_ACTIONS,
    READ_TABLES,
    REGISTRATIONS_IN_EVENT_ORDER_INDEX,
    REPO_ROOT,
    RegistrationServiceStack,
)
from infra.dynamodb import factory as dynamodb_factory
from infra.dynamodb import kit as dynamodb_kit
from infra.dynamodb.indexer import StreamIndexer
from infra.dynamodb.read_schema import RETIRED_EVENTS_GSI
from infra.dynamodb.read_tables import EVENTS_GSI, ORDER_GSI, read_table_specs
from infra.dynamodb.rebuild import DynamoDBRebuildTarget
from infra.service import StoredRegistrationService
from infra.settings import Settings

DUMMY_ENV = cdk.Environment(account="123456789012", region="eu-west-1")
PREFIX = "regsvc-"

#: The event-store tables, spelled out for readability (the tests below also
#: derive them from the code).
EVENT_STORE_TABLE_NAMES = (
    "regsvc-registrations_events",
    "regsvc-registrations_snapshots",
    "regsvc-registrations_notifications",
)
EVENTS_TABLE_NAME, SNAPSHOTS_TABLE_NAME, INDEX_TABLE_NAME = EVENT_STORE_TABLE_NAMES
IDEMPOTENCY_TABLE_NAME = "regsvc-idempotency"
KEYS_TABLE_NAME = "regsvc-keys"
READ_TABLE_NAMES = tuple(
    f"regsvc-{generation}{table}"
    for generation in ("", "green-")  # blue keeps the original names; a rebuild fills green
    for table in ("users", "gatherings", "registrations", "projection_state")
)

Resource = dict[str, Any]


# --- synthesis ----------------------------------------------------------------


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


def table_arn(resources: dict[str, Resource], table_name: str) -> dict[str, Any]:
    return {"Fn::GetAtt": [logical_id_of_table(resources, table_name), "Arn"]}


def functions(resources: dict[str, Resource]) -> dict[str, Resource]:
    """The Lambda functions by logical id."""
    return {
        logical_id: resource
        for logical_id, resource in resources.items()
        if resource["Type"] == "AWS::Lambda::Function"
    }


def logical_id_of_function(resources: dict[str, Resource], handler: str) -> str:
    (logical_id,) = (
        logical_id
        for logical_id, function in functions(resources).items()
        if function["Properties"]["Handler"] == handler
    )
    return logical_id


def lambda_environment(
    resources: dict[str, Resource], handler: str = LAMBDA_HANDLER
) -> dict[str, str]:
    function = resources[logical_id_of_function(resources, handler)]
    variables: dict[str, str] = function["Properties"]["Environment"]["Variables"]
    return variables


def role_of_function(resources: dict[str, Resource], handler: str) -> Resource:
    function = resources[logical_id_of_function(resources, handler)]
    role: Resource = resources[function["Properties"]["Role"]["Fn::GetAtt"][0]]
    return role


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


def statement_with_sid(resources: Any, sid: str) -> dict[str, Any]:
    (statement,) = (s for s in policy_statements(resources) if s.get("Sid") == sid)
    return statement


def dynamodb_statements(node: Any) -> list[dict[str, Any]]:
    return [
        statement
        for statement in policy_statements(node)
        if any(str(a).startswith("dynamodb:") for a in as_list(statement.get("Action", [])))
    ]


def key_schema(definition: dict[str, Any]) -> dict[str, Any]:
    """Key schema, attribute types and GSIs of a table, from a CloudFormation
    table's properties or a CreateTable request (same field names).
    """
    return {
        "KeySchema": definition["KeySchema"],
        "AttributeDefinitions": sorted(
            definition["AttributeDefinitions"], key=lambda a: a["AttributeName"]
        ),
        "GlobalSecondaryIndexes": sorted(
            (
                {
                    "IndexName": index["IndexName"],
                    "KeySchema": index["KeySchema"],
                    "Projection": index["Projection"],
                }
                for index in definition.get("GlobalSecondaryIndexes", [])
            ),
            key=lambda i: i["IndexName"],
        ),
    }


# --- what the code creates ----------------------------------------------------


class _TableNotFoundError(ClientError):
    def __init__(self, operation: str) -> None:
        super().__init__({"Error": {"Code": "ResourceNotFoundException"}}, operation)


class TableRecordingClient:
    """Stand-in for the DynamoDB client: no table exists until the code creates
    it, and every CreateTable request is recorded. Any other call fails, so
    start-up is known to need nothing else.
    """

    exceptions = SimpleNamespace(ResourceNotFoundException=_TableNotFoundError)
    # Read (not called) to make a DynamoDB Streams client for the same store.
    meta = SimpleNamespace(endpoint_url=None, region_name="eu-west-1")

    def __init__(self) -> None:
        self.created: dict[str, dict[str, Any]] = {}

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        request = self.created.get(TableName)
        if request is None:
            raise _TableNotFoundError("DescribeTable")
        indexes = [
            {"IndexName": index["IndexName"], "IndexStatus": "ACTIVE"}
            for index in request.get("GlobalSecondaryIndexes", [])
        ]
        table: dict[str, Any] = {
            "TableName": TableName,
            "TableStatus": "ACTIVE",
            "GlobalSecondaryIndexes": indexes,
        }
        if "StreamSpecification" in request:
            table["StreamSpecification"] = request["StreamSpecification"]
        return {"Table": table}

    def create_table(self, **request: Any) -> dict[str, Any]:
        assert request["TableName"] not in self.created
        self.created[request["TableName"]] = request
        return {}

    def update_time_to_live(self, *, TableName: str, TimeToLiveSpecification: Any) -> None:
        self.created[TableName]["TimeToLiveSpecification"] = TimeToLiveSpecification

    def close(self) -> None:
        pass

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"unexpected DynamoDB call at start-up: {name}")


@pytest.fixture(scope="module")
def created_by_the_service(resources: dict[str, Resource]) -> dict[str, dict[str, Any]]:
    """CreateTable requests of the real wiring, configured like the Lambda.

    The Lambda builds its container with ``build_container(Settings())``; here
    ``Settings`` reads the stack's Lambda environment variables.
    """
    client = TableRecordingClient()
    with pytest.MonkeyPatch.context() as patch:
        for name, value in lambda_environment(resources).items():
            patch.setenv(name, value)
        patch.setenv("AWS_REGION", DUMMY_ENV.region or "eu-west-1")
        patch.setattr(dynamodb_kit, "make_client", lambda **_: client)
        patch.setattr(dynamodb_factory, "make_client", lambda **_: client)
        patch.setattr(dynamodb_kit, "instrument", lambda _client: None)
        settings = Settings(_env_file=None)
        assert settings.store == "dynamodb"
        assert settings.environment == "production"
        assert settings.dynamodb_indexer is False  # the indexer Lambda indexes
        container = wiring.build_container(settings)
        target = container.rebuilder.target
        assert isinstance(target, DynamoDBRebuildTarget)
        target.ensure_tables()  # what a first rebuild creates: the other generation
        container.close()
    return client.created


# --- tables -------------------------------------------------------------------


def test_default_prefix_is_the_services_default_prefix() -> None:
    assert DEFAULT_TABLE_PREFIX == PREFIX
    assert Settings.model_fields["dynamodb_table_prefix"].default == DEFAULT_TABLE_PREFIX


def test_application_name_is_the_services() -> None:
    assert StoredRegistrationService.name == APPLICATION_NAME


def test_stack_defines_exactly_the_tables_the_service_creates_at_start_up(
    resources: dict[str, Resource], created_by_the_service: dict[str, dict[str, Any]]
) -> None:
    tables = tables_by_name(resources)
    assert sorted(tables) == sorted(created_by_the_service)
    for name, request in created_by_the_service.items():
        assert key_schema(tables[name]["Properties"]) == key_schema(request), name
    assert sorted(tables) == sorted(
        EVENT_STORE_TABLE_NAMES + READ_TABLE_NAMES + (IDEMPOTENCY_TABLE_NAME, KEYS_TABLE_NAME)
    )
    for name, request in created_by_the_service.items():
        assert tables[name]["Properties"].get("TimeToLiveSpecification") == request.get(
            "TimeToLiveSpecification"
        ), name


def test_read_tables_are_those_of_read_table_specs(resources: dict[str, Resource]) -> None:
    tables = tables_by_name(resources)
    specs = read_table_specs(PREFIX)
    assert sorted(design.table_name(PREFIX) for design in READ_TABLES) == sorted(
        spec.name for spec in specs
    )
    assert sorted(spec.name for spec in specs) == sorted(READ_TABLE_NAMES)
    for spec in specs:
        properties = tables[spec.name]["Properties"]
        assert properties["KeySchema"] == [
            {"AttributeName": key, "KeyType": kind}
            for key, kind in zip(spec.keys, ("HASH", "RANGE"), strict=False)
        ], spec.name
        indexes = {
            index["IndexName"]: index for index in properties.get("GlobalSecondaryIndexes", [])
        }
        assert sorted(indexes) == sorted(index.name for index in spec.indexes), spec.name
        for index in spec.indexes:
            assert indexes[index.name]["KeySchema"] == index.request()["KeySchema"], index.name
            assert indexes[index.name]["Projection"] == index.request()["Projection"]
        key_names = set(spec.keys) | {key for i in spec.indexes for key in (i.pk, i.sk)}
        assert sorted(properties["AttributeDefinitions"], key=lambda a: a["AttributeName"]) == [
            {"AttributeName": key, "AttributeType": "S"} for key in sorted(key_names)
        ], spec.name


def test_events_table_has_the_global_secondary_index_listing_events_by_id(
    template: Template,
) -> None:
    assert EVENTS_IN_ID_ORDER_INDEX == EVENTS_GSI
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-gatherings",
            "KeySchema": [{"AttributeName": "eventId", "KeyType": "HASH"}],
            "GlobalSecondaryIndexes": Match.array_equals(
                [
                    {
                        "IndexName": "listing-eventId-status-index",
                        "KeySchema": [
                            {"AttributeName": "listing", "KeyType": "HASH"},
                            {"AttributeName": "eventId", "KeyType": "RANGE"},
                        ],
                        # Keys and status only: count updates never write it.
                        "Projection": {
                            "ProjectionType": "INCLUDE",
                            "NonKeyAttributes": ["status"],
                        },
                    },
                ]
            ),
        },
    )


def test_registrations_table_has_only_the_global_secondary_index_in_event_order(
    template: Template,
) -> None:
    assert REGISTRATIONS_IN_EVENT_ORDER_INDEX == ORDER_GSI
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "TableName": "regsvc-registrations",
            "KeySchema": [
                {"AttributeName": "userId", "KeyType": "HASH"},
                {"AttributeName": "eventId", "KeyType": "RANGE"},
            ],
            "GlobalSecondaryIndexes": Match.array_equals(
                [
                    {
                        "IndexName": "eventId-order-index",
                        "KeySchema": [
                            {"AttributeName": "eventId", "KeyType": "HASH"},
                            {"AttributeName": "eventOrder", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "ALL"},
                    },
                ]
            ),
        },
    )


def test_a_migrating_deployment_keeps_the_retired_listing_index_beside_its_replacement() -> None:
    # CloudFormation creates or deletes one GSI per table per update: replacing
    # the listing index takes a deployment with both, then one without the old.
    app = cdk.App()
    stack = RegistrationServiceStack(
        app,
        "Migrating",
        env=DUMMY_ENV,
        lambda_code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
        keep_retired_indexes=True,
    )
    tables = tables_by_name(Template.from_stack(stack).to_json()["Resources"])
    for name in ("regsvc-gatherings", "regsvc-green-gatherings"):
        indexes = {
            index["IndexName"]: index["Projection"]
            for index in tables[name]["Properties"]["GlobalSecondaryIndexes"]
        }
        assert indexes == {
            EVENTS_GSI: {"ProjectionType": "INCLUDE", "NonKeyAttributes": ["status"]},
            RETIRED_EVENTS_GSI: {"ProjectionType": "ALL"},
        }, name
    # The code deletes the same index when it finds it (tables.ensure_tables).
    events_specs = [spec for spec in read_table_specs(PREFIX) if spec.name.endswith("gatherings")]
    assert {spec.retired_indexes for spec in events_specs} == {(RETIRED_EVENTS_GSI,)}


def test_event_store_tables_are_the_recorders_tables(
    resources: dict[str, Resource], created_by_the_service: dict[str, dict[str, Any]]
) -> None:
    read_names = {spec.name for spec in read_table_specs(PREFIX)} | {
        IDEMPOTENCY_TABLE_NAME,
        KEYS_TABLE_NAME,
    }
    recorder_tables = sorted(set(created_by_the_service) - read_names)
    assert sorted(design.table_name(PREFIX) for design in EVENT_STORE_TABLES) == recorder_tables
    assert recorder_tables == sorted(EVENT_STORE_TABLE_NAMES)
    # The service records no tracking positions in the event store (its
    # projector tracks in projection_state), so there is no _tracking table.
    assert not any(name.endswith("_tracking") for name in tables_by_name(resources))


def test_event_store_tables_have_the_keys_the_recorders_use(template: Template) -> None:
    for name, (pk, sk) in {
        "regsvc-registrations_events": ("oid", "ver"),
        "regsvc-registrations_snapshots": ("oid", "ver"),
        "regsvc-registrations_notifications": ("p", "id"),
    }.items():
        template.has_resource_properties(
            "AWS::DynamoDB::Table",
            {
                "TableName": name,
                "KeySchema": [
                    {"AttributeName": pk, "KeyType": "HASH"},
                    {"AttributeName": sk, "KeyType": "RANGE"},
                ],
                "AttributeDefinitions": Match.array_equals(
                    [
                        {"AttributeName": pk, "AttributeType": "S"},
                        {"AttributeName": sk, "AttributeType": "N"},
                    ]
                ),
            },
        )


def test_the_events_table_streams_new_images_as_the_service_creates_it(
    resources: dict[str, Resource], created_by_the_service: dict[str, dict[str, Any]]
) -> None:
    tables = tables_by_name(resources)
    assert tables[EVENTS_TABLE_NAME]["Properties"]["StreamSpecification"] == {
        "StreamViewType": "NEW_IMAGE"
    }
    assert created_by_the_service[EVENTS_TABLE_NAME]["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_IMAGE",
    }
    for name in tables:
        if name != EVENTS_TABLE_NAME:
            assert "StreamSpecification" not in tables[name]["Properties"], name
            assert "StreamSpecification" not in created_by_the_service[name], name


def test_event_store_tables_have_point_in_time_recovery_and_deletion_protection(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in EVENT_STORE_TABLE_NAMES:
        properties = tables[name]["Properties"]
        assert properties["PointInTimeRecoverySpecification"] == {
            "PointInTimeRecoveryEnabled": True
        }, name
        assert properties["DeletionProtectionEnabled"] is True, name


def test_event_store_tables_are_retained_when_deleted_or_replaced(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in EVENT_STORE_TABLE_NAMES:
        assert tables[name]["DeletionPolicy"] == "Retain", name
        assert tables[name]["UpdateReplacePolicy"] == "Retain", name


def test_every_table_is_billed_on_demand_and_encrypted(
    resources: dict[str, Resource],
) -> None:
    for name, table in tables_by_name(resources).items():
        assert table["Properties"]["BillingMode"] == "PAY_PER_REQUEST", name
        assert table["Properties"]["SSESpecification"]["SSEEnabled"] is True, name


def test_read_tables_are_rebuildable_so_destroyable_and_without_point_in_time_recovery(
    resources: dict[str, Resource],
) -> None:
    tables = tables_by_name(resources)
    for name in READ_TABLE_NAMES:
        assert tables[name]["DeletionPolicy"] == "Delete", name
        assert "PointInTimeRecoverySpecification" not in tables[name]["Properties"], name
        assert not tables[name]["Properties"].get("DeletionProtectionEnabled", False), name


# --- IAM: derived from the DynamoDB calls in the storage code ----------------

DYNAMODB_SOURCES = REPO_ROOT / "infra" / "dynamodb"
READ_MODEL_SOURCES = [
    DYNAMODB_SOURCES / name
    for name in (
        "read_tables.py",
        "read_schema.py",
        "read_changes.py",
        "read_queries.py",
        "live_pointer.py",
        # Scans the read tables' versions for wait_until_indexed(every_process).
        "barrier.py",
    )
]
#: The one table-creation path (every table: event store, read tables,
#: idempotency): DescribeTable, and what needs no grant.
TABLE_CREATION_SOURCES = [DYNAMODB_SOURCES / "tables.py"]
INDEXER_SOURCES = [
    DYNAMODB_SOURCES / name
    for name in ("indexer.py", "shards.py", "shard_cursors.py", "shard_leases.py")
]
IDEMPOTENCY_SOURCES = [DYNAMODB_SOURCES / "idempotency.py"]
KEY_SOURCES = [DYNAMODB_SOURCES / "keys.py"]
#: Rebuilds are an admin's job, run with admin credentials (``regsvc rebuild``):
#: the API role is not granted what they do (emptying and filling a generation).
#: So is ``regsvc reindex`` (a Scan of the events table).
REBUILD_SOURCES = [DYNAMODB_SOURCES / "rebuild.py", DYNAMODB_SOURCES / "reindex.py"]
#: What the API process runs: the recorders and their datastore. The indexer
#: module is the indexer Lambda's (the API runs no in-process indexer).
#: ``regsvc``'s check that a store's tables are there (ListTables): the command
#: line only, never the API, whose role is not granted it.
CLI_ONLY_SOURCES = [DYNAMODB_SOURCES / "presence.py"]
API_EVENT_STORE_SOURCES = sorted(
    set(DYNAMODB_SOURCES.glob("*.py"))
    - set(CLI_ONLY_SOURCES)
    - set(READ_MODEL_SOURCES)
    - set(INDEXER_SOURCES)
    - set(IDEMPOTENCY_SOURCES)
    - set(KEY_SOURCES)
    - set(REBUILD_SOURCES)
    - set(TABLE_CREATION_SOURCES)
)
INDEXER_LAMBDA_SOURCES = [REPO_ROOT / "api" / "indexer_lambda.py", *INDEXER_SOURCES]
#: The in-process poller of the stream (``make run``, tests, the admin CLI): in
#: production the event source mapping reads the stream and keeps the
#: positions, so the indexer Lambda never runs it.
IN_PROCESS_POLLER = frozenset({"ShardPoller", "StreamShards", "ShardLeases"})
#: Calls that need no grant in production: the stack creates the tables with
#: their stream and time to live (the code creates a table, or enables a stream
#: or a time to live, only when DescribeTable says it is missing), ``close`` is
#: local, and a transaction is authorised per contained item (below).
CALLS_NEEDING_NO_GRANT = frozenset(
    {"create_table", "update_table", "update_time_to_live", "close", "transact_write_items"}
)
#: The operations of the DynamoDB Streams API.
STREAMS_OPERATIONS = frozenset(
    {"describe_stream", "get_records", "get_shard_iterator", "list_streams"}
)
#: Read-model methods only ``python -m api.cli`` runs, never the Lambda.
ADMIN_ONLY_METHODS = frozenset({"reset", "empty", "_put_position", "_delete_stream_names"})
#: How the indexer names its tables (``StreamIndexer``'s attributes).
INDEXER_TABLE_ATTRIBUTES = {
    "events_table_name": EVENTS_TABLE_NAME,
    "index_table_name": INDEX_TABLE_NAME,
}


#: Shared helpers (infra/dynamodb/datastore.py) that make one kind of DynamoDB
#: call, on the table named by their second argument.
CLIENT_HELPERS = {
    "batch_get": "batch_get_item",
    # infra/dynamodb/pages.py: reading the index's pages and its old head.
    "last_page": "query",
    "first_page": "query",
    "page_at": "query",
    "pages_after": "query",
    "locate": "query",
    "read_legacy_head": "get_item",
}


def _nodes(node: ast.AST, skip: frozenset[str]) -> Iterator[ast.AST]:
    """Every node under ``node``, except inside functions and classes named in ``skip``."""
    for child in ast.iter_child_nodes(node):
        if (
            isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            and child.name in skip
        ):
            continue
        yield child
        yield from _nodes(child, skip)


def _is_client(node: ast.expr) -> bool:
    return (isinstance(node, ast.Name) and node.id == "client") or (
        isinstance(node, ast.Attribute) and node.attr == "client"
    )


def _client_calls(sources: list[Path], skip: frozenset[str]) -> Iterator[tuple[str, ast.Call]]:
    """(operation, call) of each DynamoDB client call in ``sources``, directly
    or through one of the ``CLIENT_HELPERS``."""
    for source in sources:
        for node in _nodes(ast.parse(source.read_text()), skip):
            if not isinstance(node, ast.Call):
                continue
            if isinstance(node.func, ast.Attribute) and _is_client(node.func.value):
                yield node.func.attr, node
            elif isinstance(node.func, ast.Name) and node.func.id in CLIENT_HELPERS:
                yield CLIENT_HELPERS[node.func.id], node


def _action(operation: str) -> str:
    return "dynamodb:" + operation.title().replace("_", "")


def _transact_items(sources: list[Path], skip: frozenset[str]) -> Iterator[tuple[str, ast.expr]]:
    """(IAM action, request) of each transaction item written in ``sources``."""
    for source in sources:
        for node in _nodes(ast.parse(source.read_text()), skip):
            if isinstance(node, ast.Dict):
                for key, value in zip(node.keys, node.values, strict=True):
                    if isinstance(key, ast.Constant) and key.value in TRANSACT_ITEM_ACTIONS:
                        yield TRANSACT_ITEM_ACTIONS[key.value], value


def dynamodb_actions_called(sources: list[Path], skip: frozenset[str] = frozenset()) -> set[str]:
    """IAM actions of the DynamoDB client calls in ``sources``."""
    operations = {operation for operation, _ in _client_calls(sources, skip)}
    actions = {_action(op) for op in operations - CALLS_NEEDING_NO_GRANT}
    if "transact_write_items" in operations:
        actions |= {action for action, _ in _transact_items(sources, skip)}
    return actions


def streams_actions_called(sources: list[Path], skip: frozenset[str] = frozenset()) -> set[str]:
    """IAM actions of the DynamoDB Streams calls in ``sources`` (whatever the
    client is called: the operations' names are DynamoDB Streams' own)."""
    return {
        _action(node.func.attr)
        for source in sources
        for node in _nodes(ast.parse(source.read_text()), skip)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr in STREAMS_OPERATIONS
    }


def _table_named_by(node: ast.AST | None, where: str) -> str:
    """The table a ``TableName`` value (or a ``RequestItems`` key) names."""
    text = ast.unparse(node) if node is not None else ""
    tables = {table for attribute, table in INDEXER_TABLE_ATTRIBUTES.items() if attribute in text}
    assert len(tables) == 1, f"cannot tell which table {where} uses: {text!r}"
    (table,) = tables
    return table


def _dict_value(node: ast.expr, key: str) -> ast.expr | None:
    if isinstance(node, ast.Dict):
        for k, v in zip(node.keys, node.values, strict=True):
            if isinstance(k, ast.Constant) and k.value == key:
                return v
    return None


def dynamodb_actions_by_table(sources: list[Path], skip: frozenset[str]) -> dict[str, set[str]]:
    """IAM actions of the DynamoDB calls in ``sources``, per table they name
    (through the indexer's ``events_table_name`` / ``index_table_name``)."""
    found: dict[str, set[str]] = {}
    for operation, call in _client_calls(sources, skip):
        if operation in CALLS_NEEDING_NO_GRANT:
            continue
        keywords = {keyword.arg: keyword.value for keyword in call.keywords}
        if isinstance(call.func, ast.Name):  # a helper: (client, table name, ...)
            tables = [_table_named_by(call.args[1], operation)]
        elif "RequestItems" in keywords:
            request_items = keywords["RequestItems"]
            assert isinstance(request_items, ast.Dict), ast.unparse(call)
            tables = [_table_named_by(k, operation) for k in request_items.keys]
        else:
            tables = [_table_named_by(keywords.get("TableName"), operation)]
        for table in tables:
            found.setdefault(table, set()).add(_action(operation))
    for action, request in _transact_items(sources, skip):
        table = _table_named_by(_dict_value(request, "TableName"), action)
        found.setdefault(table, set()).add(action)
    return found


def test_the_api_code_calls_exactly_the_actions_the_api_role_grants() -> None:
    # The event store's tables are checked at start-up (DescribeTable) through
    # the one table-creation path.
    assert dynamodb_actions_called(API_EVENT_STORE_SOURCES) | dynamodb_actions_called(
        TABLE_CREATION_SOURCES
    ) == set(API_EVENT_TABLE_ACTIONS) | set(API_INDEX_TABLE_ACTIONS)
    assert dynamodb_actions_called(READ_MODEL_SOURCES, ADMIN_ONLY_METHODS) | (
        dynamodb_actions_called(TABLE_CREATION_SOURCES)
    ) == set(READ_MODEL_ACTIONS)
    # What the admin-only methods add (so is deliberately not granted).
    assert dynamodb_actions_called(READ_MODEL_SOURCES) - set(READ_MODEL_ACTIONS) == {
        "dynamodb:BatchWriteItem",
    }
    # Plus DescribeTable: ensure_tables (tables.py) checks the table at start-up.
    assert dynamodb_actions_called(TABLE_CREATION_SOURCES) == {"dynamodb:DescribeTable"}
    assert dynamodb_actions_called(IDEMPOTENCY_SOURCES) | {"dynamodb:DescribeTable"} == set(
        IDEMPOTENCY_ACTIONS
    )
    assert dynamodb_actions_called(KEY_SOURCES) | {"dynamodb:DescribeTable"} == set(
        KEY_TABLE_ACTIONS
    )
    assert streams_actions_called(API_EVENT_STORE_SOURCES + READ_MODEL_SOURCES) == set()


def test_the_indexer_code_calls_exactly_the_actions_the_indexer_role_grants_per_table() -> None:
    assert dynamodb_actions_by_table(INDEXER_LAMBDA_SOURCES, IN_PROCESS_POLLER) == {
        EVENTS_TABLE_NAME: set(INDEXER_EVENT_TABLE_ACTIONS),
        INDEX_TABLE_NAME: set(INDEXER_INDEX_TABLE_ACTIONS),
    }
    # The handler itself calls nothing: it hands the records to the indexer.
    assert dynamodb_actions_called(INDEXER_LAMBDA_SOURCES[:1]) == set()


def test_the_mapping_reads_the_stream_with_the_actions_the_in_process_poller_uses() -> None:
    # The event source mapping reads the stream with the indexer's role, as
    # the in-process poller does with its own client; the indexer itself
    # never calls DynamoDB Streams.
    assert streams_actions_called(INDEXER_SOURCES) == set(INDEXER_STREAM_ACTIONS)
    assert streams_actions_called(INDEXER_LAMBDA_SOURCES, IN_PROCESS_POLLER) == set()
    # What else the poller needs, and the Lambda does not: the stream's ARN
    # (DescribeTable) and its shard checkpoints (GetItem / UpdateItem).
    assert dynamodb_actions_called(INDEXER_SOURCES) - dynamodb_actions_called(
        INDEXER_SOURCES, IN_PROCESS_POLLER
    ) == {"dynamodb:DescribeTable", "dynamodb:UpdateItem"}


def test_admin_only_read_model_methods_are_called_only_by_the_admin_commands() -> None:
    callers = set()
    for package in ("api", "domain", "projections", "infra"):
        for source in (REPO_ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(source.read_text())):
                if (
                    isinstance(node, ast.Call)
                    and isinstance(node.func, ast.Attribute)
                    and node.func.attr in ADMIN_ONLY_METHODS
                    and isinstance(node.func.value, ast.Attribute | ast.Name)
                    and "read_model" in ast.unparse(node.func.value)
                ):
                    callers.add(source.relative_to(REPO_ROOT).as_posix())
    assert callers <= {"api/cli.py"}


def test_api_role_may_append_to_and_read_the_events_and_snapshots_tables_only(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "EventStoreTables")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        ["dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:PutItem", "dynamodb:Query"]
    )
    assert sorted(statement["Action"]) == sorted(API_EVENT_TABLE_ACTIONS)
    assert statement["Resource"] == [
        table_arn(resources, EVENTS_TABLE_NAME),
        table_arn(resources, SNAPSHOTS_TABLE_NAME),
    ]


def test_api_role_may_only_read_the_index_table(resources: dict[str, Resource]) -> None:
    statement = statement_with_sid(resources, "IndexTableReadOnly")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        # BatchGetItem: the commit markers of a history page (positions).
        ["dynamodb:BatchGetItem", "dynamodb:DescribeTable", "dynamodb:GetItem", "dynamodb:Query"]
    )
    assert sorted(statement["Action"]) == sorted(API_INDEX_TABLE_ACTIONS)
    assert statement["Resource"] == table_arn(resources, INDEX_TABLE_NAME)


def test_api_role_no_longer_writes_the_index_nor_reads_the_stream(
    resources: dict[str, Resource],
) -> None:
    role = role_of_function(resources, LAMBDA_HANDLER)
    index_arn = table_arn(resources, INDEX_TABLE_NAME)
    for statement in dynamodb_statements(role):
        if index_arn in as_list(statement["Resource"]):
            assert not set(as_list(statement["Action"])) & WRITE_ACTIONS, statement
        assert not set(as_list(statement["Action"])) & set(INDEXER_STREAM_ACTIONS), statement


def test_api_role_may_read_and_write_the_read_tables(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "ReadTables")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        [
            "dynamodb:DescribeTable",
            "dynamodb:GetItem",
            "dynamodb:BatchGetItem",
            "dynamodb:PutItem",
            "dynamodb:UpdateItem",
            "dynamodb:DeleteItem",
            "dynamodb:Query",
            "dynamodb:Scan",  # the drift check (read-only)
        ]
    )
    assert sorted(statement["Action"]) == sorted(READ_MODEL_ACTIONS)
    assert statement["Resource"] == [table_arn(resources, name) for name in READ_TABLE_NAMES]


def test_api_role_may_only_query_the_events_and_registrations_indexes(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "ReadTableIndexes")
    assert statement["Effect"] == "Allow"
    assert statement["Action"] == "dynamodb:Query"
    assert list(READ_MODEL_INDEX_ACTIONS) == ["dynamodb:Query"]
    assert statement["Resource"] == [
        {"Fn::Join": ["", [table_arn(resources, name), "/index/*"]]}
        for name in (
            "regsvc-gatherings",
            "regsvc-registrations",
            "regsvc-green-gatherings",
            "regsvc-green-registrations",
        )
    ]


def test_indexer_role_may_read_only_the_events_tables_stream(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "IndexerEventsStream")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        ["dynamodb:DescribeStream", "dynamodb:GetRecords", "dynamodb:GetShardIterator"]
    )
    assert sorted(statement["Action"]) == sorted(INDEXER_STREAM_ACTIONS)
    assert statement["Resource"] == {
        "Fn::GetAtt": [logical_id_of_table(resources, EVENTS_TABLE_NAME), "StreamArn"]
    }


def test_indexer_role_may_only_read_the_events_table(resources: dict[str, Resource]) -> None:
    statement = statement_with_sid(resources, "IndexerEventsTableRead")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(["dynamodb:BatchGetItem", "dynamodb:Query"])
    assert sorted(statement["Action"]) == sorted(INDEXER_EVENT_TABLE_ACTIONS)
    assert statement["Resource"] == table_arn(resources, EVENTS_TABLE_NAME)


def test_indexer_role_may_read_and_write_items_of_the_index_table_only(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "IndexerIndexTable")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(
        ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query"]
    )
    assert sorted(statement["Action"]) == sorted(INDEXER_INDEX_TABLE_ACTIONS)
    assert statement["Resource"] == table_arn(resources, INDEX_TABLE_NAME)


def test_indexer_role_may_repair_the_read_tables_rows_only(
    resources: dict[str, Resource],
) -> None:
    """It reads the live pointer and repairs rows a rebuild's switch left
    behind (infra/dynamodb/repair.py): item reads and writes, no scan."""
    statement = statement_with_sid(resources, "IndexerReadTables")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(INDEXER_READ_TABLE_ACTIONS)
    assert "dynamodb:Scan" not in statement["Action"]


def test_each_role_holds_exactly_its_own_dynamodb_statements(
    resources: dict[str, Resource],
) -> None:
    def sids(handler: str) -> list[str]:
        return sorted(
            s.get("Sid", "") for s in dynamodb_statements(role_of_function(resources, handler))
        )

    assert sids(LAMBDA_HANDLER) == [
        "EventStoreTables",
        "IdempotencyTable",
        "IndexTableReadOnly",
        "KeyTable",
        "ReadTableIndexes",
        "ReadTables",
    ]
    assert sids(INDEXER_HANDLER) == [
        "IndexerEventsStream",
        "IndexerEventsTableRead",
        "IndexerIndexTable",
        "IndexerReadTables",
    ]
    assert len(dynamodb_statements(resources)) == 10  # no statement anywhere else


def test_no_iam_policy_is_attached_beside_the_roles_own(template: Template) -> None:
    # Every grant is inline in the two roles: no construct added a policy
    # (DynamoEventSource, for one, would add ListStreams on "*").
    template.resource_count_is("AWS::IAM::Policy", 0)
    template.resource_count_is("AWS::IAM::Role", 2)


def test_no_iam_statement_grants_a_wildcard_action_or_table_creation(
    resources: dict[str, Resource],
) -> None:
    statements = list(policy_statements(resources))
    assert statements, "expected IAM policy statements in the template"
    for statement in statements:
        assert "NotAction" not in statement, statement
        for action in as_list(statement.get("Action", [])):
            assert action not in ("*", "dynamodb:*"), statement
            assert not (isinstance(action, str) and action.endswith(":*")), statement
            assert action not in (
                "dynamodb:CreateTable",
                "dynamodb:DeleteTable",
                "dynamodb:UpdateTable",
                "dynamodb:ListStreams",
            ), statement


def test_no_dynamodb_statement_applies_to_every_resource(
    resources: dict[str, Resource],
) -> None:
    statements = dynamodb_statements(resources)
    assert statements, "expected DynamoDB statements in the template"
    for statement in statements:
        assert "NotResource" not in statement, statement
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            assert "*" not in str(resource).replace("/index/*", ""), statement


@pytest.mark.parametrize("handler", [LAMBDA_HANDLER, INDEXER_HANDLER])
def test_each_lambda_role_has_only_the_managed_basic_execution_policy(
    resources: dict[str, Resource], handler: str
) -> None:
    role = role_of_function(resources, handler)["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"] == [
        {
            "Action": "sts:AssumeRole",
            "Effect": "Allow",
            "Principal": {"Service": "lambda.amazonaws.com"},
        }
    ]
    assert role["ManagedPolicyArns"] == [
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
    ]
    assert [policy["PolicyName"] for policy in role["Policies"]] == ["DynamoDbAccess"]


# --- Lambda and HTTP API ------------------------------------------------------


def test_api_lambda_runs_the_mangum_handler_against_the_dynamodb_store(
    template: Template, resources: dict[str, Resource]
) -> None:
    template.resource_count_is("AWS::Lambda::Function", 2)
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "api.lambda_handler.handler",
            "Runtime": "python3.11",
            "MemorySize": 512,
            "Timeout": 30,
        },
    )
    assert lambda_environment(resources) == {
        "STORE": "dynamodb",
        "DYNAMODB_TABLE_PREFIX": "regsvc-",
        "ENVIRONMENT": "production",
        "DYNAMODB_INDEXER": "false",
    }


def test_indexer_lambda_runs_the_stream_indexer_handler_with_its_own_role(
    resources: dict[str, Resource],
) -> None:
    assert INDEXER_HANDLER == "api.indexer_lambda.handler"
    assert callable(indexer_lambda.handler)
    function = resources[logical_id_of_function(resources, INDEXER_HANDLER)]["Properties"]
    assert function["Runtime"] == "python3.11"
    assert function["MemorySize"] == 256
    assert function["Timeout"] == 60
    # At most two invocations race for the index's head item, and they are
    # always available (the stack's INDEXER_RESERVED_CONCURRENCY says why).
    assert function["ReservedConcurrentExecutions"] == 2
    assert role_of_function(resources, INDEXER_HANDLER) != role_of_function(
        resources, LAMBDA_HANDLER
    )
    assert lambda_environment(resources, INDEXER_HANDLER) == {
        "STORE": "dynamodb",
        "DYNAMODB_TABLE_PREFIX": "regsvc-",
        "ENVIRONMENT": "production",
    }


def test_indexer_lambda_indexes_the_stacks_events_table_into_its_index_table(
    resources: dict[str, Resource],
) -> None:
    with pytest.MonkeyPatch.context() as patch:
        for name, value in lambda_environment(resources, INDEXER_HANDLER).items():
            patch.setenv(name, value)
        patch.setenv("AWS_REGION", DUMMY_ENV.region or "eu-west-1")
        client = TableRecordingClient()
        patch.setattr(dynamodb_factory, "make_client", lambda **_: client)
        indexer = indexer_lambda.build_stream_indexer(Settings(_env_file=None))
    # It creates no table: its role may not even describe one.
    assert client.created == {}
    assert isinstance(indexer, StreamIndexer)
    assert indexer.events_table_name == EVENTS_TABLE_NAME
    assert indexer.index_table_name == INDEX_TABLE_NAME


def test_the_events_stream_feeds_the_indexer_in_order_retrying_failed_batches_forever(
    template: Template, resources: dict[str, Resource]
) -> None:
    template.resource_count_is("AWS::Lambda::EventSourceMapping", 1)
    (mapping,) = template.find_resources("AWS::Lambda::EventSourceMapping").values()
    assert mapping["Properties"] == {
        "FunctionName": {"Ref": logical_id_of_function(resources, INDEXER_HANDLER)},
        "EventSourceArn": {
            "Fn::GetAtt": [logical_id_of_table(resources, EVENTS_TABLE_NAME), "StreamArn"]
        },
        # From the oldest record the stream holds: nothing appended is left out.
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 100,
        # Never skip a record: retried until indexed, however old.
        "MaximumRetryAttempts": -1,
        "MaximumRecordAgeInSeconds": -1,
        "BisectBatchOnFunctionError": True,
        # One batch per shard at a time, in stream order.
        "ParallelizationFactor": 1,
        "Enabled": True,
    }
    # No partial batch responses (the handler raises) and nowhere to drop records.
    assert "FunctionResponseTypes" not in mapping["Properties"]
    assert "DestinationConfig" not in mapping["Properties"]


def test_an_alarm_fires_when_the_indexer_falls_five_minutes_behind(
    template: Template, resources: dict[str, Resource]
) -> None:
    template.resource_count_is("AWS::CloudWatch::Alarm", 1)
    template.has_resource_properties(
        "AWS::CloudWatch::Alarm",
        {
            "Namespace": "AWS/Lambda",
            "MetricName": "IteratorAge",
            "Statistic": "Maximum",
            "Dimensions": [
                {
                    "Name": "FunctionName",
                    "Value": {"Ref": logical_id_of_function(resources, INDEXER_HANDLER)},
                }
            ],
            "Period": 60,
            "Threshold": 300_000,
            "ComparisonOperator": "GreaterThanThreshold",
            "EvaluationPeriods": 1,
        },
    )


def test_lambda_code_asset_holds_the_runtime_packages_and_no_dev_files(
    resources: dict[str, Resource], assembly_dir: Path
) -> None:
    (asset_key,) = {
        function["Properties"]["Code"]["S3Key"] for function in functions(resources).values()
    }  # both Lambdas run the same code
    asset = assembly_dir / f"asset.{asset_key.removesuffix('.zip')}"
    files = {p.relative_to(asset).as_posix() for p in asset.rglob("*") if p.is_file()}

    assert "api/lambda_handler.py" in files
    assert "api/indexer_lambda.py" in files
    for package in ("api", "domain", "projections", "infra"):
        assert f"{package}/__init__.py" in files, package
    for module in (
        "infra/dynamodb/factory.py",
        "infra/dynamodb/read_tables.py",
        "infra/dynamodb/indexer.py",
        "infra/dynamodb/layout.py",
    ):
        assert module in files, module
    for excluded in (".venv", ".git", ".tools", "tests", "data", "bench", "cdk.out"):
        assert not (asset / excluded).exists(), excluded
    assert not (asset / "infra" / "cdk").exists()
    assert not any("__pycache__" in f or f.endswith(".pyc") for f in files)


def test_an_http_api_routes_every_path_to_the_lambda(template: Template) -> None:
    template.resource_count_is("AWS::ApiGatewayV2::Api", 1)
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Api", {"ProtocolType": "HTTP", "Name": "regsvc-api"}
    )
    template.has_resource_properties("AWS::ApiGatewayV2::Route", {"RouteKey": "$default"})
    template.has_resource_properties(
        "AWS::ApiGatewayV2::Integration",
        {"IntegrationType": "AWS_PROXY", "PayloadFormatVersion": "2.0"},
    )
    template.has_resource_properties(
        "AWS::Lambda::Permission",
        {"Action": "lambda:InvokeFunction", "Principal": "apigateway.amazonaws.com"},
    )


def test_outputs_include_the_api_url_and_every_table_name(
    template: Template, resources: dict[str, Resource]
) -> None:
    outputs: dict[str, Any] = template.to_json()["Outputs"]
    assert outputs["ApiUrl"]["Value"] == {
        "Fn::GetAtt": [
            next(iter(template.find_resources("AWS::ApiGatewayV2::Api"))),
            "ApiEndpoint",
        ]
    }
    table_outputs = {
        output_id: output["Value"]
        for output_id, output in outputs.items()
        if output_id.endswith("TableName")
    }
    assert sorted(table_outputs) == sorted(
        f"{design.construct_id}Name"
        for design in (*EVENT_STORE_TABLES, *READ_TABLES, IDEMPOTENCY_TABLE, KEYS_TABLE)
    )
    assert sorted(value["Ref"] for value in table_outputs.values()) == sorted(
        logical_id_of_table(resources, name) for name in tables_by_name(resources)
    )


# --- table prefix -------------------------------------------------------------


def test_table_prefix_can_be_set_through_the_context() -> None:
    # A second, cheaper synthesis: inline stand-in code, no asset staging.
    app = cdk.App(context={"tablePrefix": "staging-"})
    stack = RegistrationServiceStack(
        app,
        "PrefixedStack",
        env=DUMMY_ENV,
        lambda_code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
    )
    prefixed = Template.from_stack(stack)

    names = sorted(
        resource["Properties"]["TableName"]
        for resource in prefixed.find_resources("AWS::DynamoDB::Table").values()
    )
    assert names == sorted(
        name.replace("regsvc-", "staging-", 1)
        for name in (
            *EVENT_STORE_TABLE_NAMES,
            *READ_TABLE_NAMES,
            IDEMPOTENCY_TABLE_NAME,
            KEYS_TABLE_NAME,
        )
    )
    assert {spec.name for spec in read_table_specs("staging-")} <= set(names)
    prefixes = [
        function["Properties"]["Environment"]["Variables"]["DYNAMODB_TABLE_PREFIX"]
        for function in prefixed.find_resources("AWS::Lambda::Function").values()
    ]
    assert prefixes == ["staging-", "staging-"]  # the API's and the indexer's


@pytest.mark.parametrize(
    ("context", "reserved"), [({}, 2), ({"indexerReservedConcurrency": "none"}, None)]
)
def test_the_app_reserves_the_indexers_concurrency_unless_told_not_to(
    context: dict[str, str],
    reserved: int | None,
    tmp_path: Path,
) -> None:
    bundle = tmp_path / "bundle"  # a stand-in for the vendored Lambda bundle
    bundle.mkdir()
    (bundle / "handler.py").write_text("def handler(event, context):\n    return None\n")
    app = build_app(
        outdir=str(tmp_path / "cdk.out"), context={"lambdaAssetDir": str(bundle), **context}
    )
    stack = app.node.find_child(STACK_NAME)
    assert isinstance(stack, RegistrationServiceStack)

    function = Template.from_stack(stack).find_resources(
        "AWS::Lambda::Function", {"Properties": {"Handler": INDEXER_HANDLER}}
    )
    (properties,) = (resource["Properties"] for resource in function.values())
    assert properties.get("ReservedConcurrentExecutions") == reserved


@pytest.mark.parametrize("prefix", ["no spaces allowed", "x" * 101, "slash/"])
def test_a_prefix_the_service_would_reject_is_rejected(prefix: str) -> None:
    with pytest.raises(ValueError, match="invalid table prefix"):
        RegistrationServiceStack(
            cdk.App(),
            "BadPrefix",
            table_prefix=prefix,
            lambda_code=lambda_.Code.from_inline("def handler(event, context):\n    return {}\n"),
        )
    with pytest.raises(ValueError, match="dynamodb_table_prefix"):
        Settings(dynamodb_table_prefix=prefix, _env_file=None)


def test_api_role_may_claim_keep_and_release_idempotency_keys(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "IdempotencyTable")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(IDEMPOTENCY_ACTIONS)
    assert statement["Resource"] == table_arn(resources, IDEMPOTENCY_TABLE_NAME)
    table = tables_by_name(resources)[IDEMPOTENCY_TABLE_NAME]
    assert table["Properties"]["TimeToLiveSpecification"] == {
        "AttributeName": "expiresAt",
        "Enabled": True,
    }


def test_api_role_may_make_read_and_destroy_the_users_keys(
    resources: dict[str, Resource],
) -> None:
    statement = statement_with_sid(resources, "KeyTable")
    assert statement["Effect"] == "Allow"
    assert sorted(statement["Action"]) == sorted(KEY_TABLE_ACTIONS)
    assert statement["Resource"] == table_arn(resources, KEYS_TABLE_NAME)


def test_the_keys_table_is_retained_and_keeps_no_backups_of_destroyed_keys(
    resources: dict[str, Resource],
) -> None:
    table = tables_by_name(resources)[KEYS_TABLE_NAME]
    assert table["DeletionPolicy"] == "Retain"
    assert table["Properties"]["DeletionProtectionEnabled"] is True
    assert "PointInTimeRecoverySpecification" not in table["Properties"]
