"""Typed errors of ecomcore.

Every error has a stable ``code`` that callers can branch on, and a message a
person can act on.  A command that raises one of these has stored nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


class EcomcoreError(Exception):
    """Base class of every error ecomcore raises on purpose."""

    code = "ecomcore_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details

    def __str__(self) -> str:
        return f"{type(self).__name__}: {self.message}"


class InvalidCommand(EcomcoreError):
    """A command failed validation before anything was touched."""

    code = "invalid_command"

    def __init__(self, command: str, problems: Sequence[Mapping[str, Any]]) -> None:
        readable = "; ".join(
            f"{'.'.join(str(p) for p in problem.get('loc', ())) or command}: {problem.get('msg')}"
            for problem in problems
        )
        super().__init__(f"invalid {command}: {readable}", command=command, problems=list(problems))
        self.command = command
        self.problems = list(problems)


class DomainError(EcomcoreError):
    """A business rule refused the command."""

    code = "domain_error"


class NotFound(DomainError):
    code = "not_found"


class AlreadyExists(DomainError):
    code = "already_exists"


class IllegalTransition(DomainError):
    """The aggregate's current state does not allow this command."""

    code = "illegal_transition"


class InsufficientStock(DomainError):
    """One or more SKUs cannot be reserved in the quantity asked for."""

    code = "insufficient_stock"

    def __init__(self, shortages: Sequence[Mapping[str, Any]]) -> None:
        parts = []
        for s in shortages:
            where = f" in warehouse {s['warehouse_id']}" if s.get("warehouse_id") else ""
            parts.append(
                f"sku {s['sku_id']}{where} has {s['available']} available, {s['requested']} requested"
            )
        super().__init__("; ".join(parts), shortages=list(shortages))
        self.shortages = [dict(s) for s in shortages]

    @property
    def sku_ids(self) -> list[str]:
        return sorted({s["sku_id"] for s in self.shortages})


class CouponNotUsable(DomainError):
    """The coupon cannot be used for this purchase (state, validity, scope, threshold)."""

    code = "coupon_not_usable"


class CampaignRefused(DomainError):
    """A coupon cannot be issued from this campaign (window, quota, per-customer limit)."""

    code = "campaign_refused"


class PaymentRefused(DomainError):
    """The payment does not match what is owed or conflicts with an earlier one."""

    code = "payment_refused"


class PromotionConflict(DomainError):
    code = "promotion_conflict"


class RefundRefused(DomainError):
    """The units asked for cannot be refunded now (never paid, already refunded, on their way…)."""

    code = "refund_refused"


class ReturnRefused(DomainError):
    """Goods that cannot be returned: not delivered, already claimed, or past the after-sales window."""

    code = "return_refused"


class AmountTooLarge(DomainError):
    """An amount the command would produce (a checkout's payable, say) exceeds what one amount may be."""

    code = "amount_too_large"


class ConcurrencyConflict(EcomcoreError):
    """Other writers kept changing the same aggregates; the command gave up after retrying."""

    code = "concurrency_conflict"


class StoreError(EcomcoreError):
    """The event store failed in a way that is neither the caller's input nor a business rule.

    Raised as it is for a fault of the database that fits no subclass (a value it refuses,
    a statement it cannot run); the library's or driver's error is its ``__cause__``.
    """

    code = "store_error"


class StoreUnavailable(StoreError):
    """The store cannot be reached or cannot take the work now: connection refused or
    dropped, server down or restarting, disk full, database locked for too long.
    Nothing was stored; trying again later may succeed."""

    code = "store_unavailable"


class StoreCorrupted(StoreError):
    """What the store holds is not what ecomcore wrote: an event that cannot be decoded or
    does not fit its class, an unknown topic or ``class_version``, a gap in an aggregate's
    versions, a file that is not a database.  Nothing was loaded from it."""

    code = "store_corrupted"

    def __init__(
        self,
        message: str,
        *,
        aggregate_id: object = None,
        version: int | None = None,
        notification_id: int | None = None,
        topic: str | None = None,
    ) -> None:
        where = []
        if notification_id is not None:
            where.append(f"notification #{notification_id}")
        if aggregate_id is not None:
            where.append(f"aggregate {aggregate_id}" + (f" v{version}" if version is not None else ""))
        text = f"{', '.join(where)}: {message}" if where else message
        super().__init__(
            text, aggregate_id=aggregate_id, version=version, notification_id=notification_id, topic=topic
        )
        self.aggregate_id = aggregate_id
        self.version = version
        self.notification_id = notification_id
        self.topic = topic


class CipherKeyMismatch(StoreError):
    """The cipher key given does not fit the store: a wrong key, no key for an encrypted
    store, or a key for a store written without one.  Refused on open, before anything
    was written."""

    code = "cipher_key_mismatch"
