"""The registration service bound to storage: eventsourcing's errors become domain errors."""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import IntegrityError, OperationalError, Recording

from domain.application import RegistrationService
from domain.errors import ChangeTooLargeError, StoreUnavailableError, WriteConflictError
from infra.dynamodb.errors import DynamoDBLimitError


class StoredRegistrationService(RegistrationService):
    """Maps the store's failures onto the domain's error hierarchy at the boundary."""

    name = "Registrations"

    def save(self, *objs: Any, **kwargs: Any) -> list[Recording[Any]]:
        try:
            return super().save(*objs, **kwargs)
        except IntegrityError as error:
            # Another command saved one of these aggregates first.
            raise WriteConflictError(str(error)) from error
        except DynamoDBLimitError as error:
            # Refused before anything was written.
            raise ChangeTooLargeError(str(error)) from error
        except OperationalError as error:
            raise StoreUnavailableError(f"The event store is unavailable: {error}") from error
