"""CDK app entry point: ``python -m infra.cdk.app`` synthesises into ``cdk.out/``.

Context values (``cdk synth -c key=value`` or ``cdk.json``):

* ``tablePrefix``: prepended verbatim to every DynamoDB table name and passed to
  the Lambda as ``DYNAMODB_TABLE_PREFIX`` (default ``regsvc-``, the service's
  own default; note the trailing dash).
* ``lambdaAssetDir``: a directory holding a ready-to-deploy Lambda bundle
  (application packages plus vendored dependencies). If unset, the repository
  root is used as the code asset (application code only).
* ``indexerReservedConcurrency``: the indexer Lambda's reserved concurrency
  (default 2, see ``infra.cdk.stack.INDEXER_RESERVED_CONCURRENCY``); ``none``
  reserves nothing, for accounts whose concurrency limit is too low to reserve.

Account and region come from ``CDK_DEFAULT_ACCOUNT`` / ``CDK_DEFAULT_REGION``
when set (as the ``cdk`` CLI does); otherwise the stack is environment-agnostic.
The app does no context lookups, so synthesis needs no AWS credentials.
"""

from __future__ import annotations

import os

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_

from infra.cdk.stack import INDEXER_RESERVED_CONCURRENCY, RegistrationServiceStack

STACK_NAME = "RegistrationService"


DEFAULT_OUTDIR = "cdk.out"


def build_app(outdir: str | None = None, context: dict[str, object] | None = None) -> cdk.App:
    """Build the app.

    ``outdir`` defaults to ``$CDK_OUTDIR`` (set by the cdk CLI), else ``cdk.out``;
    ``context`` adds to the context the cdk CLI passes (``-c``, ``cdk.json``).
    """
    app = cdk.App(outdir=outdir or os.environ.get("CDK_OUTDIR") or DEFAULT_OUTDIR, context=context)

    account = os.environ.get("CDK_DEFAULT_ACCOUNT")
    region = os.environ.get("CDK_DEFAULT_REGION")
    env = cdk.Environment(account=account, region=region) if account or region else None

    asset_dir = app.node.try_get_context("lambdaAssetDir")
    lambda_code = lambda_.Code.from_asset(str(asset_dir)) if asset_dir else None

    RegistrationServiceStack(
        app,
        STACK_NAME,
        env=env,
        lambda_code=lambda_code,
        indexer_reserved_concurrency=_reserved_concurrency(
            app.node.try_get_context("indexerReservedConcurrency")
        ),
        description="Registration service: event store, read models and HTTP API",
    )
    cdk.Tags.of(app).add("service", "registration-service")
    return app


def _reserved_concurrency(value: object) -> int | None:
    if value is None:
        return INDEXER_RESERVED_CONCURRENCY
    if str(value).lower() == "none":
        return None
    return int(str(value))


def main() -> None:
    build_app().synth()


if __name__ == "__main__":
    main()
