"""The one hierarchy of errors the registration domain raises.

The HTTP edge maps each class to a status code and an error code in one
place (``api/errors.py``); nothing here knows about HTTP.
"""

from __future__ import annotations


class RegistrationDomainError(Exception):
    """Raised when a command cannot be carried out; base of every domain error."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidCommandError(RegistrationDomainError):
    """Raised when a command's arguments break a rule of the model."""


class UserNotFoundError(RegistrationDomainError):
    """Raised when a command names a user that was never created."""


class DuplicateUserError(RegistrationDomainError):
    """Raised when a user is created with a userId that already exists."""


class UserErasedError(DuplicateUserError):
    """Raised when personal data is sealed for a userId whose user was erased
    (the id stays taken, as a deleted gathering's does)."""


class PersonalDataNotSealedError(RegistrationDomainError):
    """Raised when a user is erased whose history still holds their name as given
    (written before names were sealed): destroying a key would not erase it, so
    the history must be sealed first (``regsvc seal-names``)."""


class GatheringNotFoundError(RegistrationDomainError):
    """Raised when a command names a gathering that does not exist (or was deleted)."""


class DuplicateGatheringError(RegistrationDomainError):
    """Raised when a gathering is created with an id that exists or once existed."""


class GatheringNotOpenError(RegistrationDomainError):
    """Raised when someone registers for a gathering whose status is not open."""


class GatheringFullError(RegistrationDomainError):
    """Raised when a gathering is full and its waitlist is disabled."""


class CapacityBelowRegisteredError(RegistrationDomainError):
    """Raised when capacity would drop below the number of confirmed registrations."""


class GatheringHasRegistrationsError(RegistrationDomainError):
    """Raised when a gathering with confirmed or waitlisted people is deleted."""


class AlreadyRegisteredError(RegistrationDomainError):
    """Raised when a user with a confirmed seat registers again."""


class AlreadyOnWaitlistError(RegistrationDomainError):
    """Raised when a user who is on the waitlist registers again."""


class RegistrationNotFoundError(RegistrationDomainError):
    """Raised when a user leaves a gathering they are not registered for."""


class WriteConflictError(RegistrationDomainError):
    """Raised when a save collides with a concurrent save of the same aggregate.

    Internal: commands retry on it; clients see ConcurrentModificationError
    only once the retries are used up.
    """


class ConcurrentModificationError(RegistrationDomainError):
    """Raised when a command kept colliding with concurrent commands and gave up."""


class StoreUnavailableError(RegistrationDomainError):
    """Raised when the event store or read tables cannot be reached."""


class StoreDidNotAnswerError(StoreUnavailableError):
    """Raised when a health probe's read of the store did not finish within its
    budget (``api/probes.py``): the store stalls rather than refuses."""


class StoreBusyError(StoreUnavailableError):
    """Raised when a save told not to wait for the store's write lock finds it
    taken (another process is writing). Internal: the save is made again where
    it may wait (see ``LoopBatcher``)."""


class InvariantViolationError(RegistrationDomainError):
    """Raised when a gathering breaks a capacity or waitlist invariant (dev and test)."""


class InvalidPageTokenError(RegistrationDomainError):
    """Raised when a listing's nextToken was not issued by this service."""


class UnauthorizedError(RegistrationDomainError):
    """Raised when a request needs an API key and has none, or sends one that is
    malformed or unknown (anywhere: a bad key is never silently ignored)."""


class ForbiddenError(RegistrationDomainError):
    """Raised when a known API key's role does not allow the route it calls."""


class ProjectionNotFoundError(RegistrationDomainError):
    """Raised when an admin names a projection the service does not have."""


class RebuildInProgressError(RegistrationDomainError):
    """Raised when a projection's rebuild is asked for while one is running."""


class UndecodableEventError(RegistrationDomainError):
    """Raised when a state must be replayed through a stored event whose bytes can no
    longer be decoded (altered in the store; ``/audit/verify`` names it)."""
