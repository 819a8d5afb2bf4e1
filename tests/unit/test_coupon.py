"""CouponCampaign and Coupon (spec §5.3): given events, when a command, then the new events or a typed error."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from uuid import UUID, uuid5

import pytest
from events import an_event, assert_events
from strategies import T0, replayed, state

from ecomcore.domain.aggregate import Snapshot, project
from ecomcore.domain.coupon import Coupon, CouponCampaign, CouponState, IssueChannel, Validity
from ecomcore.domain.errors import CampaignRefused, CouponNotUsable, IllegalTransition
from ecomcore.domain.pricing import CouponKind, CouponTerms

CAMPAIGN = UUID("00000000-0000-4000-8000-0000000000c1")
CHECKOUT = UUID("00000000-0000-4000-8000-0000000000d1")
OTHER_CHECKOUT = UUID("00000000-0000-4000-8000-0000000000d2")
ORDER = UUID("00000000-0000-4000-8000-0000000000e1")
DAY = timedelta(days=1)
TERMS = CouponTerms(kind=CouponKind.THRESHOLD, amount_off=1500, threshold=10000)



def campaign(
    *, validity: Validity | None = None, total: int = 100, per_customer: int = 1,
    claim_from: Any = T0, claim_until: Any = T0 + 10 * DAY,
) -> CouponCampaign:
    live = CouponCampaign.create(
        CAMPAIGN,
        T0 - DAY,
        name="Double 11",
        terms=TERMS,
        claim_starts_at=claim_from,
        claim_ends_at=claim_until,
        validity=validity or Validity(days_from_issue=7),
        total_quantity=total,
        per_customer_limit=per_customer,
    )
    return replayed(live)


def coupon(*, validity: Validity | None = None, issued_at: Any = T0, customer: str = "cust-1") -> Coupon:
    """An available coupon of ``customer``, rebuilt from its Issued event."""
    issued = campaign(validity=validity).issue(customer, IssueChannel.CLAIM, issued_at)
    return replayed(issued)


def locked(**kwargs: Any) -> Coupon:
    c = coupon(**kwargs)
    c.lock("cust-1", CHECKOUT, (ORDER,), T0 + timedelta(hours=1))
    return replayed(c)


# ------------------------------------------------------------------ campaign: issuing


def test_issue_records_campaign_count_and_a_new_coupon() -> None:
    """Issuing records CouponIssued on the campaign and Issued on a new coupon for that customer."""
    c = campaign()
    new = c.issue("cust-1", IssueChannel.PUSH, T0 + timedelta(hours=2))
    (issued,) = c.collect_events()
    assert isinstance(issued, CouponCampaign.CouponIssued)
    assert (issued.coupon_id, issued.customer_id, issued.channel) == (new.id, "cust-1", IssueChannel.PUSH)
    (created,) = new.collect_events()
    assert isinstance(created, Coupon.Issued)
    assert (created.campaign_id, created.customer_id, created.terms) == (CAMPAIGN, "cust-1", TERMS)
    assert c.issued == 1 and c.issued_per_customer == {"cust-1": 1}
    assert new.state is CouponState.AVAILABLE


def test_issued_coupon_ids_are_deterministic_and_distinct() -> None:
    """Coupon ids follow from the campaign and its count: distinct per issue, the same on replay."""
    c = campaign(per_customer=5)
    first = c.issue("cust-1", IssueChannel.CLAIM, T0).id
    second = c.issue("cust-1", IssueChannel.CLAIM, T0).id
    assert first != second
    assert first == campaign().issue("cust-1", IssueChannel.CLAIM, T0).id


@pytest.mark.parametrize("at", [T0 - timedelta(seconds=1), T0 + 10 * DAY, T0 + 11 * DAY])
def test_issue_outside_claim_window_is_refused(at: Any) -> None:
    """Issuing before the claim window opens or once it has closed raises CampaignRefused."""
    c = campaign()
    with pytest.raises(CampaignRefused) as caught:
        c.issue("cust-1", IssueChannel.CLAIM, at)
    assert caught.value.code == "campaign_refused"
    assert c.collect_events() == [] and c.issued == 0


@pytest.mark.parametrize("at", [T0, T0 + 10 * DAY - timedelta(seconds=1)])
def test_issue_at_the_edges_of_the_claim_window_is_allowed(at: Any) -> None:
    """The claim window includes its start and runs up to (not including) its end."""
    c = campaign()
    c.issue("cust-1", IssueChannel.CLAIM, at)
    assert len(c.collect_events()) == 1


def test_issue_beyond_total_quantity_is_refused() -> None:
    """Once total_quantity coupons are issued, the next issue is refused."""
    c = campaign(total=2, per_customer=5)
    c.issue("cust-1", IssueChannel.CLAIM, T0)
    c.issue("cust-2", IssueChannel.CLAIM, T0)
    c = replayed(c)
    with pytest.raises(CampaignRefused):
        c.issue("cust-3", IssueChannel.CLAIM, T0)
    assert c.collect_events() == [] and c.issued == 2


def test_issue_beyond_per_customer_limit_is_refused() -> None:
    """A customer cannot hold more than the per-customer limit; another customer still can."""
    c = campaign(per_customer=2)
    c.issue("cust-1", IssueChannel.CLAIM, T0)
    c.issue("cust-1", IssueChannel.COMPENSATION, T0)
    c = replayed(c)
    with pytest.raises(CampaignRefused) as caught:
        c.issue("cust-1", IssueChannel.CLAIM, T0)
    assert "cust-1" in str(caught.value)
    assert c.collect_events() == []
    c.issue("cust-2", IssueChannel.CLAIM, T0)
    assert len(c.collect_events()) == 1


def test_stopped_campaign_refuses_and_stop_is_idempotent() -> None:
    """A stopped campaign issues nothing; stopping it again records nothing."""
    c = campaign()
    c.stop("budget spent", T0)
    c = replayed(c)
    stopped = c.given_history[-1]
    assert isinstance(stopped, CouponCampaign.Stopped) and stopped.reason == "budget spent"
    c.stop("again", T0)
    assert c.collect_events() == []
    with pytest.raises(CampaignRefused):
        c.issue("cust-1", IssueChannel.CLAIM, T0)
    assert c.collect_events() == []


def test_validity_days_from_issue() -> None:
    """A coupon valid N days from issue runs from its issue time to N days later."""
    issued_at = T0 + timedelta(hours=5)
    c = coupon(validity=Validity(days_from_issue=3), issued_at=issued_at)
    assert (c.valid_from, c.valid_until) == (issued_at, issued_at + 3 * DAY)


def test_validity_fixed_dates() -> None:
    """A coupon with fixed validity dates carries those dates whenever it is issued."""
    fixed = Validity(valid_from=T0 + DAY, valid_until=T0 + 20 * DAY)
    c = coupon(validity=fixed, issued_at=T0 + timedelta(hours=5))
    assert (c.valid_from, c.valid_until) == (T0 + DAY, T0 + 20 * DAY)


@pytest.mark.parametrize(
    "fields",
    [
        {},
        {"days_from_issue": 3, "valid_from": T0, "valid_until": T0 + DAY},
        {"valid_from": T0 + DAY, "valid_until": T0},
        {"valid_from": T0},
        {"days_from_issue": 0},
    ],
)
def test_validity_must_have_exactly_one_consistent_form(fields: dict[str, Any]) -> None:
    """Validity is either fixed dates (from < until) or a positive number of days, never both or neither."""
    with pytest.raises(ValueError):
        Validity(**fields)


def test_campaign_snapshot_round_trip() -> None:
    """A campaign's Snapshot restores an equal campaign, which issues the same next coupon id."""
    live = campaign(per_customer=3)
    live.issue("cust-1", IssueChannel.CLAIM, T0)
    live.issue("cust-2", IssueChannel.PUSH, T0 + DAY)
    live.collect_events()
    restored = Snapshot.take(live).restore()
    assert isinstance(restored, CouponCampaign)
    assert state(restored) == state(live)
    assert restored.issue("cust-1", IssueChannel.CLAIM, T0 + DAY).id == live.issue(
        "cust-1", IssueChannel.CLAIM, T0 + DAY
    ).id


def test_stopped_campaign_snapshot_stays_stopped() -> None:
    """A stopped campaign's snapshot restores a stopped campaign."""
    live = campaign()
    live.stop("done", T0)
    restored = Snapshot.take(live).restore()
    with pytest.raises(CampaignRefused):
        restored.issue("cust-1", IssueChannel.CLAIM, T0)  # type: ignore[attr-defined]


# ------------------------------------------------------------------ coupon: lock / unlock


def test_lock_by_its_customer_when_available_and_valid() -> None:
    """Locking an available, valid coupon by its own customer records Locked with the checkout."""
    c = coupon()
    c.lock("cust-1", CHECKOUT, (ORDER,), T0 + DAY)
    (event,) = c.collect_events()
    assert isinstance(event, Coupon.Locked) and (event.checkout_id, event.order_ids) == (CHECKOUT, (ORDER,))
    assert c.state is CouponState.LOCKED and c.checkout_id == CHECKOUT


def test_lock_by_another_customer_is_refused() -> None:
    """Another customer cannot lock the coupon."""
    c = coupon()
    with pytest.raises(CouponNotUsable) as caught:
        c.lock("cust-2", CHECKOUT, (ORDER,), T0 + DAY)
    assert caught.value.code == "coupon_not_usable"
    assert c.collect_events() == []


@pytest.mark.parametrize("at", [T0 + 7 * DAY, T0 + 30 * DAY])
def test_lock_past_validity_is_refused(at: Any) -> None:
    """A coupon past its validity cannot be locked even though it is still recorded as available."""
    c = coupon(validity=Validity(days_from_issue=7))
    assert c.state is CouponState.AVAILABLE
    with pytest.raises(CouponNotUsable):
        c.lock("cust-1", CHECKOUT, (ORDER,), at)
    assert c.collect_events() == []


def test_lock_before_validity_starts_is_refused() -> None:
    """A fixed-date coupon cannot be locked before its validity starts."""
    c = coupon(validity=Validity(valid_from=T0 + 2 * DAY, valid_until=T0 + 5 * DAY))
    with pytest.raises(CouponNotUsable):
        c.lock("cust-1", CHECKOUT, (ORDER,), T0 + DAY)
    assert c.collect_events() == []


@pytest.mark.parametrize("then", ["locked", "redeemed", "expired"])
def test_lock_when_not_available_is_refused(then: str) -> None:
    """Only an available coupon can be locked: a locked, redeemed or expired one cannot."""
    c = locked(validity=Validity(valid_from=T0, valid_until=T0 + 5 * DAY))
    if then == "redeemed":
        c.redeem(CHECKOUT, T0 + timedelta(hours=2))
    if then == "expired":
        c.unlock("cancelled", T0 + 6 * DAY)  # unlocked past validity: expires at once
    c = replayed(c)
    with pytest.raises(CouponNotUsable):
        c.lock("cust-1", OTHER_CHECKOUT, (ORDER,), T0 + timedelta(hours=3))
    assert c.collect_events() == []


def test_unlock_makes_coupon_available_again() -> None:
    """Unlocking a locked coupon within validity records Unlocked and it can be locked again."""
    c = locked()
    c.unlock("cancelled", T0 + DAY)
    (event,) = c.collect_events()
    assert isinstance(event, Coupon.Unlocked) and event.reason == "cancelled"
    assert c.state is CouponState.AVAILABLE and c.checkout_id is None
    c.lock("cust-1", OTHER_CHECKOUT, (ORDER,), T0 + DAY)
    assert c.state is CouponState.LOCKED


def test_unlock_past_validity_expires_at_once() -> None:
    """Unlocking a coupon whose validity has ended records Unlocked then Expired."""
    c = locked(validity=Validity(days_from_issue=7))
    c.unlock("expired", T0 + 8 * DAY)
    assert_events(c.collect_events(), an_event(Coupon.Unlocked, reason="expired"), an_event(Coupon.Expired))
    assert c.state is CouponState.EXPIRED


def test_unlock_when_not_locked_is_refused() -> None:
    """Unlocking an available coupon raises IllegalTransition and records nothing."""
    c = coupon()
    with pytest.raises(IllegalTransition):
        c.unlock("cancelled", T0)
    assert c.collect_events() == []


# ------------------------------------------------------------------ coupon: redeem / expire


def test_redeem_by_locking_checkout() -> None:
    """The checkout that locked the coupon redeems it."""
    c = locked()
    c.redeem(CHECKOUT, T0 + timedelta(hours=2))
    (event,) = c.collect_events()
    assert isinstance(event, Coupon.Redeemed) and event.checkout_id == CHECKOUT
    assert c.state is CouponState.REDEEMED


def test_redeem_is_idempotent() -> None:
    """Redeeming again for the same checkout records nothing."""
    c = locked()
    c.redeem(CHECKOUT, T0 + timedelta(hours=2))
    c = replayed(c)
    c.redeem(CHECKOUT, T0 + timedelta(hours=3))
    assert c.collect_events() == []
    assert c.state is CouponState.REDEEMED


def test_redeem_by_another_checkout_is_refused() -> None:
    """A checkout that did not lock the coupon cannot redeem it, locked or already redeemed."""
    c = locked()
    with pytest.raises(IllegalTransition):
        c.redeem(OTHER_CHECKOUT, T0 + timedelta(hours=2))
    assert c.collect_events() == []
    c.redeem(CHECKOUT, T0 + timedelta(hours=2))
    c.collect_events()
    with pytest.raises(IllegalTransition):
        c.redeem(OTHER_CHECKOUT, T0 + timedelta(hours=2))
    assert c.collect_events() == []


def test_redeem_of_available_coupon_is_refused() -> None:
    """An unlocked coupon cannot be redeemed."""
    c = coupon()
    with pytest.raises(IllegalTransition):
        c.redeem(CHECKOUT, T0)
    assert c.collect_events() == []


def test_expire_available_coupon_past_validity() -> None:
    """An available coupon past its validity expires; once expired nothing more is recorded."""
    c = coupon(validity=Validity(days_from_issue=7))
    assert c.expire(T0 + 7 * DAY) is True
    assert_events(c.collect_events(), an_event(Coupon.Expired, timestamp=T0 + 7 * DAY))
    assert c.state is CouponState.EXPIRED
    assert c.expire(T0 + 8 * DAY) is False
    assert c.collect_events() == []


def test_expire_within_validity_or_before_it_starts_does_nothing() -> None:
    """A coupon still valid, or not yet valid, does not expire."""
    c = coupon(validity=Validity(valid_from=T0 + DAY, valid_until=T0 + 3 * DAY))
    assert c.expire(T0) is False
    assert c.expire(T0 + 2 * DAY) is False
    assert c.collect_events() == []


@pytest.mark.parametrize("then", ["locked", "redeemed"])
def test_expire_ignores_coupons_in_use(then: str) -> None:
    """Only available coupons expire: a locked or redeemed coupon past validity is left alone."""
    c = locked(validity=Validity(days_from_issue=7))
    if then == "redeemed":
        c.redeem(CHECKOUT, T0 + timedelta(hours=2))
        c.collect_events()
    assert c.expire(T0 + 30 * DAY) is False
    assert c.collect_events() == []
    assert c.state.value == then


def test_usable_by_reflects_customer_state_and_validity() -> None:
    """usable_by is true only for the owner, while available and valid."""
    c = coupon(validity=Validity(days_from_issue=7))
    assert c.usable_by("cust-1", T0 + DAY)
    assert not c.usable_by("cust-2", T0 + DAY)
    assert not c.usable_by("cust-1", T0 + 7 * DAY)
    c.lock("cust-1", CHECKOUT, (ORDER,), T0 + DAY)
    assert not c.usable_by("cust-1", T0 + DAY)


def test_coupon_replay_equals_live() -> None:
    """Replaying a coupon's lifecycle events rebuilds the live coupon."""
    c = coupon()
    history = list(c.given_history)  # type: ignore[attr-defined]
    c.lock("cust-1", CHECKOUT, (ORDER,), T0 + DAY)
    c.unlock("cancelled", T0 + DAY)
    c.lock("cust-1", OTHER_CHECKOUT, (ORDER,), T0 + DAY)
    c.redeem(OTHER_CHECKOUT, T0 + DAY)
    history += c.collect_events()
    assert state(project(None, history)) == state(c)  # type: ignore[arg-type]
    assert uuid5(CAMPAIGN, "1") == c.id


# ------------------------------------------------------------------ coupon: return after a full refund

OTHER_ORDER = UUID("00000000-0000-4000-8000-0000000000e2")
THIRD_ORDER = UUID("00000000-0000-4000-8000-0000000000e3")


def redeemed(order_ids: tuple[UUID, ...] = (ORDER,), **kwargs: Any) -> Coupon:
    """A coupon redeemed by CHECKOUT over ``order_ids`` (one merchant order, or several for a platform coupon)."""
    c = coupon(**kwargs)
    c.lock("cust-1", CHECKOUT, order_ids, T0 + timedelta(hours=1))
    c.redeem(CHECKOUT, T0 + timedelta(hours=2))
    return replayed(c)


def test_merchant_coupon_reinstated_when_its_order_is_refunded_within_validity() -> None:
    """Its only order fully refunded while the coupon is valid: OrderRefunded then Reinstated; available again."""
    c = redeemed(validity=Validity(days_from_issue=7))
    assert c.order_refunded(ORDER, T0 + 2 * DAY) is True
    assert_events(
        c.collect_events(),
        an_event(Coupon.OrderRefunded, order_id=ORDER),
        an_event(Coupon.Reinstated, reason="order refunded in full"),
    )
    assert (c.state, c.checkout_id, c.order_ids, c.refunded_orders) == (CouponState.AVAILABLE, None, (), set())
    assert c.usable_by("cust-1", T0 + 2 * DAY)


def test_coupon_past_validity_is_not_reinstated() -> None:
    """A full refund after the coupon's validity does not give it back: it expires (spec §5.3)."""
    c = redeemed(validity=Validity(days_from_issue=7))
    assert c.order_refunded(ORDER, T0 + 7 * DAY) is False
    c = replayed(c)
    assert_events(
        c.given_history[-2:],
        an_event(Coupon.OrderRefunded, order_id=ORDER),
        an_event(Coupon.Expired, timestamp=T0 + 7 * DAY),
    )
    assert c.state is CouponState.EXPIRED and c.refunded_orders == {ORDER}
    assert c.order_refunded(ORDER, T0 + 8 * DAY) is False
    assert c.collect_events() == []
    assert c.state is CouponState.EXPIRED


def test_platform_coupon_reinstated_only_when_every_order_is_refunded() -> None:
    """A platform coupon over two orders: the first refund records OrderRefunded only; the second reinstates it."""
    c = redeemed((ORDER, OTHER_ORDER))
    assert c.order_refunded(ORDER, T0 + DAY) is False
    c = replayed(c)
    assert_events(
        c.given_history[-2:],
        an_event(Coupon.Redeemed, checkout_id=CHECKOUT),
        an_event(Coupon.OrderRefunded, order_id=ORDER),
    )
    assert c.state is CouponState.REDEEMED and c.refunded_orders == {ORDER}
    assert c.order_refunded(ORDER, T0 + DAY) is False  # the same order again records nothing
    assert c.collect_events() == []
    assert c.order_refunded(OTHER_ORDER, T0 + 2 * DAY) is True
    assert_events(
        c.collect_events(),
        an_event(Coupon.OrderRefunded, order_id=OTHER_ORDER),
        an_event(Coupon.Reinstated, reason="order refunded in full"),
    )
    assert c.state is CouponState.AVAILABLE


@pytest.mark.parametrize("given", ["available", "locked"])
def test_order_refunded_on_a_coupon_not_redeemed_does_nothing(given: str) -> None:
    """A coupon that is not redeemed is not returned by a refund: False, no event."""
    c = coupon() if given == "available" else locked()
    assert c.order_refunded(ORDER, T0 + DAY) is False
    assert c.collect_events() == []
    assert c.state.value == given


def test_order_refunded_for_an_order_the_coupon_did_not_cover_does_nothing() -> None:
    """A refunded order that is not one of the coupon's orders leaves it alone: False, no event."""
    c = redeemed((ORDER, OTHER_ORDER))
    assert c.order_refunded(THIRD_ORDER, T0 + DAY) is False
    assert c.collect_events() == []
    assert c.state is CouponState.REDEEMED and c.refunded_orders == set()


def test_returned_coupon_can_be_locked_again() -> None:
    """A returned coupon is locked by a new checkout; the old order's refund no longer touches it."""
    c = redeemed()
    c.order_refunded(ORDER, T0 + DAY)
    c = replayed(c)
    c.lock("cust-1", OTHER_CHECKOUT, (OTHER_ORDER,), T0 + 2 * DAY)
    (event,) = c.collect_events()
    assert isinstance(event, Coupon.Locked) and event.order_ids == (OTHER_ORDER,)
    c.redeem(OTHER_CHECKOUT, T0 + 2 * DAY)
    c.collect_events()
    assert c.order_refunded(ORDER, T0 + 3 * DAY) is False
    assert c.collect_events() == []
    assert (c.state, c.checkout_id, c.order_ids) == (CouponState.REDEEMED, OTHER_CHECKOUT, (OTHER_ORDER,))


def test_coupon_return_history_replays_to_the_same_coupon() -> None:
    """Redeemed, one of two orders refunded, then the other: replay gives the live coupon."""
    c = redeemed((ORDER, OTHER_ORDER))
    c.order_refunded(ORDER, T0 + DAY)
    rebuilt = replayed(c)
    assert state(rebuilt) == state(c) and rebuilt.refunded_orders == {ORDER}
    rebuilt.order_refunded(OTHER_ORDER, T0 + DAY)
    assert state(replayed(rebuilt)) == state(rebuilt)
