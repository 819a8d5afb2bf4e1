"""CouponCampaign (the operator's template) and Coupon (one issued to one customer)."""

from __future__ import annotations

from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any
from uuid import UUID, uuid5

from pydantic import Field, model_validator

from ecomcore.domain.aggregate import Aggregate, DomainEvent, applies
from ecomcore.domain.errors import CampaignRefused, CouponNotUsable, IllegalTransition
from ecomcore.domain.pricing import CouponTerms
from ecomcore.domain.values import Value


class IssueChannel(StrEnum):
    CLAIM = "claim"  # the customer takes it
    PUSH = "push"  # the system sends it (registration, campaign)
    COMPENSATION = "compensation"  # after-sales goodwill


class Validity(Value):
    """How long an issued coupon can be used: fixed dates, or N days from issue."""

    valid_from: datetime | None = None
    valid_until: datetime | None = None
    days_from_issue: int | None = Field(None, gt=0)

    @model_validator(mode="after")
    def _one_form(self) -> Validity:
        fixed = self.valid_from is not None and self.valid_until is not None
        if fixed == (self.days_from_issue is not None):
            raise ValueError("give either valid_from and valid_until, or days_from_issue")
        if fixed and self.valid_until <= self.valid_from:  # type: ignore[operator]
            raise ValueError("valid_until must be after valid_from")
        return self

    def window(self, issued_at: datetime) -> tuple[datetime, datetime]:
        if self.days_from_issue is not None:
            # History may hold any number of days (new campaigns are bounded): a window
            # past the calendar's end ends there rather than overflowing.
            room = (datetime.max.replace(tzinfo=issued_at.tzinfo) - issued_at).days - 1
            return issued_at, issued_at + timedelta(days=min(self.days_from_issue, room))
        return self.valid_from, self.valid_until  # type: ignore[return-value]


class CouponCampaign(Aggregate):
    contended = True  # every customer claiming a coupon of the campaign counts on it

    class Created(DomainEvent):
        name: str
        terms: CouponTerms
        claim_starts_at: datetime
        claim_ends_at: datetime
        validity: Validity
        total_quantity: int = Field(gt=0)
        per_customer_limit: int = Field(gt=0)

    class CouponIssued(DomainEvent):
        coupon_id: UUID
        customer_id: str
        channel: IssueChannel

    class Stopped(DomainEvent):
        reason: str

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.name = ""
        self.terms: CouponTerms | None = None
        self.claim_starts_at: datetime | None = None
        self.claim_ends_at: datetime | None = None
        self.validity: Validity | None = None
        self.total_quantity = 0
        self.per_customer_limit = 0
        self.issued = 0
        self.issued_per_customer: dict[str, int] = {}
        self.stopped = False

    @classmethod
    def create(cls, campaign_id: UUID, now: datetime, **terms: Any) -> CouponCampaign:
        campaign = cls(campaign_id)
        campaign._record(cls.Created, now, **terms)
        return campaign

    def issue(self, customer_id: str, channel: IssueChannel, now: datetime) -> Coupon:
        """Issue one coupon to a customer; the caller saves campaign and coupon together."""
        if self.stopped:
            raise CampaignRefused(f"campaign {self.name!r} has been stopped")
        assert self.claim_starts_at and self.claim_ends_at and self.validity and self.terms
        if not self.claim_starts_at <= now < self.claim_ends_at:
            raise CampaignRefused(
                f"campaign {self.name!r} issues coupons from {self.claim_starts_at:%Y-%m-%d %H:%M} "
                f"to {self.claim_ends_at:%Y-%m-%d %H:%M}, not at {now:%Y-%m-%d %H:%M}"
            )
        if self.issued >= self.total_quantity:
            raise CampaignRefused(f"campaign {self.name!r} has issued all {self.total_quantity} coupons")
        held = self.issued_per_customer.get(customer_id, 0)
        if held >= self.per_customer_limit:
            raise CampaignRefused(
                f"customer {customer_id} already has {held} coupon(s) of campaign {self.name!r} "
                f"(limit {self.per_customer_limit})"
            )
        # Deterministic id: two racing issues collide on the campaign version anyway.
        coupon_id = uuid5(self.id, str(self.issued + 1))
        self._record(self.CouponIssued, now, coupon_id=coupon_id, customer_id=customer_id, channel=channel)
        valid_from, valid_until = self.validity.window(now)
        return Coupon.issue(
            coupon_id,
            now,
            campaign_id=self.id,
            customer_id=customer_id,
            channel=channel,
            terms=self.terms,
            valid_from=valid_from,
            valid_until=valid_until,
        )

    def stop(self, reason: str, now: datetime) -> None:
        if not self.stopped:
            self._record(self.Stopped, now, reason=reason)

    @applies(Created)
    def _created(self, e: Created) -> None:
        self.name, self.terms, self.validity = e.name, e.terms, e.validity
        self.claim_starts_at, self.claim_ends_at = e.claim_starts_at, e.claim_ends_at
        self.total_quantity, self.per_customer_limit = e.total_quantity, e.per_customer_limit

    @applies(CouponIssued)
    def _coupon_issued(self, e: CouponIssued) -> None:
        self.issued += 1
        self.issued_per_customer[e.customer_id] = self.issued_per_customer.get(e.customer_id, 0) + 1

    @applies(Stopped)
    def _stopped(self, e: Stopped) -> None:
        self.stopped = True

    def snapshot_state(self) -> dict[str, Any]:
        assert self.created_on and self.terms and self.claim_starts_at and self.claim_ends_at and self.validity
        created = self.Created(
            originator_id=self.id,
            originator_version=1,
            timestamp=self.created_on,
            name=self.name,
            terms=self.terms,
            claim_starts_at=self.claim_starts_at,
            claim_ends_at=self.claim_ends_at,
            validity=self.validity,
            total_quantity=self.total_quantity,
            per_customer_limit=self.per_customer_limit,
        )
        return {
            "created": created.model_dump(mode="json"),
            "issued": self.issued,
            "issued_per_customer": self.issued_per_customer,
            "stopped": self.stopped,
        }

    def restore_snapshot_state(self, state: dict[str, Any]) -> None:
        self._created(self.Created.model_validate(state["created"]))
        self.created_on = datetime.fromisoformat(state["created"]["timestamp"])
        self.issued = state["issued"]
        self.issued_per_customer = dict(state["issued_per_customer"])
        self.stopped = state["stopped"]


class CouponState(StrEnum):
    AVAILABLE = "available"
    LOCKED = "locked"
    REDEEMED = "redeemed"
    EXPIRED = "expired"


class Coupon(Aggregate):
    class Issued(DomainEvent):
        campaign_id: UUID
        customer_id: str
        channel: IssueChannel
        terms: CouponTerms
        valid_from: datetime
        valid_until: datetime

    class Locked(DomainEvent):
        checkout_id: UUID
        order_ids: tuple[UUID, ...]

    class Unlocked(DomainEvent):
        reason: str

    class Redeemed(DomainEvent):
        checkout_id: UUID

    class OrderRefunded(DomainEvent):
        """One order this coupon was used on has been refunded in full."""

        order_id: UUID

    class Reinstated(DomainEvent):
        """Available again: every order it was redeemed on was refunded in full, within its validity.

        ecomcore 0.1 stored it as ``Coupon.Returned`` (see ``renames.py``).
        """

        reason: str

    class Expired(DomainEvent):
        pass

    def __init__(self, id: UUID) -> None:
        super().__init__(id)
        self.campaign_id: UUID | None = None
        self.customer_id = ""
        self.terms: CouponTerms | None = None
        self.valid_from: datetime | None = None
        self.valid_until: datetime | None = None
        self.state = CouponState.AVAILABLE
        self.checkout_id: UUID | None = None
        self.order_ids: tuple[UUID, ...] = ()
        self.refunded_orders: set[UUID] = set()

    @classmethod
    def issue(cls, coupon_id: UUID, now: datetime, **facts: Any) -> Coupon:
        coupon = cls(coupon_id)
        coupon._record(cls.Issued, now, **facts)
        return coupon

    def is_valid_at(self, now: datetime) -> bool:
        assert self.valid_from and self.valid_until
        return self.valid_from <= now < self.valid_until

    def usable_by(self, customer_id: str, now: datetime) -> bool:
        return self.state is CouponState.AVAILABLE and self.customer_id == customer_id and self.is_valid_at(now)

    def check_usable(self, customer_id: str, now: datetime) -> None:
        """Raise CouponNotUsable unless this customer can use the coupon now."""
        if self.customer_id != customer_id:
            raise CouponNotUsable(f"coupon {self.id} belongs to another customer")
        if not self.is_valid_at(now):
            # Past its validity a coupon cannot be used, whatever its recorded state.
            raise CouponNotUsable(
                f"coupon {self.id} is valid from {self.valid_from:%Y-%m-%d %H:%M} "
                f"until {self.valid_until:%Y-%m-%d %H:%M}"
            )
        if self.state is not CouponState.AVAILABLE:
            raise CouponNotUsable(f"coupon {self.id} is {self.state.value}, not available")

    def lock(self, customer_id: str, checkout_id: UUID, order_ids: tuple[UUID, ...], now: datetime) -> None:
        self.check_usable(customer_id, now)
        self._record(self.Locked, now, checkout_id=checkout_id, order_ids=order_ids)

    def unlock(self, reason: str, now: datetime) -> None:
        if self.state is not CouponState.LOCKED:
            raise IllegalTransition(f"coupon {self.id} is {self.state.value}; only a locked coupon can be unlocked")
        self._record(self.Unlocked, now, reason=reason)
        if not self.is_valid_at(now):
            self._record(self.Expired, now)

    def redeem(self, checkout_id: UUID, now: datetime) -> None:
        if self.state is CouponState.REDEEMED and self.checkout_id == checkout_id:
            return
        if self.state is not CouponState.LOCKED or self.checkout_id != checkout_id:
            raise IllegalTransition(f"coupon {self.id} is not locked by checkout {checkout_id}")
        self._record(self.Redeemed, now, checkout_id=checkout_id)

    def order_refunded(self, order_id: UUID, now: datetime) -> bool:
        """An order it was redeemed on is fully refunded; True if the coupon is available again.

        A coupon is reinstated only when every order it covered is fully refunded (a
        platform coupon spans all merchant orders of its checkout), and only while it
        is still valid; past its validity it expires instead (spec §5.3).  Until then
        it stays redeemed.  Every such order records itself here, so two orders
        refunded at once conflict on this coupon instead of each missing the other's.
        """
        if self.state is not CouponState.REDEEMED or order_id not in self.order_ids:
            return False
        if order_id not in self.refunded_orders:
            self._record(self.OrderRefunded, now, order_id=order_id)
        if not self.refunded_orders.issuperset(self.order_ids):
            return False
        if not self.is_valid_at(now):
            self._record(self.Expired, now)
            return False
        self._record(self.Reinstated, now, reason="order refunded in full")
        return True

    def expire(self, now: datetime) -> bool:
        """Record that an unused coupon ran out of validity; True if it did now."""
        ended = self.valid_until is not None and now >= self.valid_until
        if self.state is CouponState.AVAILABLE and not self.is_valid_at(now) and ended:
            self._record(self.Expired, now)
            return True
        return False

    @applies(Issued)
    def _issued(self, e: Issued) -> None:
        self.campaign_id, self.customer_id, self.terms = e.campaign_id, e.customer_id, e.terms
        self.valid_from, self.valid_until = e.valid_from, e.valid_until

    @applies(Locked)
    def _locked(self, e: Locked) -> None:
        self.state, self.checkout_id, self.order_ids = CouponState.LOCKED, e.checkout_id, e.order_ids

    @applies(Unlocked)
    def _unlocked(self, e: Unlocked) -> None:
        self.state, self.checkout_id, self.order_ids = CouponState.AVAILABLE, None, ()

    @applies(Redeemed)
    def _redeemed(self, e: Redeemed) -> None:
        self.state = CouponState.REDEEMED

    @applies(OrderRefunded)
    def _order_refunded(self, e: OrderRefunded) -> None:
        self.refunded_orders.add(e.order_id)

    @applies(Reinstated)
    def _reinstated(self, e: Reinstated) -> None:
        self.state, self.checkout_id, self.order_ids = CouponState.AVAILABLE, None, ()
        self.refunded_orders = set()

    @applies(Expired)
    def _expired(self, e: Expired) -> None:
        self.state = CouponState.EXPIRED
