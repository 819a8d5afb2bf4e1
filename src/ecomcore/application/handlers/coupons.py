"""Coupons: campaigns, issuing coupons, checking one usable, recommending the best ones."""

from __future__ import annotations

from uuid import UUID, uuid4

from ecomcore.application.commands import CreateCampaign, IssueCoupon, RecommendCoupons
from ecomcore.application.handlers.cart import SplitCart
from ecomcore.application.unit_of_work import UnitOfWork
from ecomcore.domain.coupon import Coupon, CouponCampaign
from ecomcore.domain.errors import NotFound
from ecomcore.domain.pricing import AppliedCoupon, CouponSlots
from ecomcore.domain.recommendation import CandidateCoupon, Recommendation, recommend
from ecomcore.infrastructure.log_index import CouponOwners


def create_campaign(uow: UnitOfWork, c: CreateCampaign) -> UUID:
    if not c.terms.is_platform and uow.catalogue.merchant(c.terms.funding) is None:
        raise NotFound(f"campaign is funded by merchant {c.terms.funding}, which is not registered")
    campaign_id = c.campaign_id or uuid4()
    if uow.find(CouponCampaign, campaign_id) is not None:
        return campaign_id  # creating the same campaign again changes nothing
    uow.add(CouponCampaign.create(campaign_id, uow.now, **c.model_dump(exclude={"campaign_id"})))
    return campaign_id


def issue_coupon(uow: UnitOfWork, c: IssueCoupon) -> UUID:
    campaign = uow.get(CouponCampaign, c.campaign_id, "coupon campaign")
    coupon = uow.add(campaign.issue(c.customer_id, c.channel, uow.now))
    return coupon.id


def usable_coupon(uow: UnitOfWork, coupon_id: UUID, customer_id: str) -> AppliedCoupon:
    """The coupon, checked usable by this customer now, as pricing applies it."""
    coupon = uow.get(Coupon, coupon_id, "coupon")
    coupon.check_usable(customer_id, uow.now)
    assert coupon.terms is not None
    return AppliedCoupon(coupon_id=str(coupon.id), terms=coupon.terms)


def recommend_coupons(uow: UnitOfWork, query: RecommendCoupons, owners: CouponOwners) -> Recommendation:
    """The customer's usable coupons that save most on this cart; changes nothing."""
    cart = SplitCart.of(uow.catalogue, query.items)
    candidates = []
    for coupon_id in owners.coupons_of(query.customer_id):
        coupon = uow.get(Coupon, coupon_id)
        if coupon.usable_by(query.customer_id, uow.now):
            assert coupon.terms is not None and coupon.valid_until is not None
            candidates.append(
                CandidateCoupon(coupon_id=str(coupon.id), terms=coupon.terms, valid_until=coupon.valid_until)
            )
    return recommend(cart.priced(uow.catalogue, CouponSlots(), uow.now), candidates)
