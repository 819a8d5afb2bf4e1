"""Opening the shop: the catalogue registered, the warehouses stocked, the day's
promotion and coupon campaigns launched (and coupons handed out all day long)."""

from __future__ import annotations

import math
from datetime import timedelta

from ecomcore.domain.coupon import IssueChannel, Validity
from ecomcore.domain.errors import CampaignRefused
from ecomcore.domain.pricing import apportion
from ecomcore.simulation.catalogue import (
    CAMPAIGNS,
    LISTINGS,
    MERCHANTS,
    TEA_FESTIVAL,
    WAREHOUSES,
)
from ecomcore.simulation.customers import HeldCoupon
from ecomcore.simulation.day import Day


def open_the_shop(day: Day) -> None:
    shop = day.shop
    for warehouse_id, region, priority in WAREHOUSES:
        shop.register_warehouse(warehouse_id=warehouse_id, region=region, priority=priority)
    for merchant in MERCHANTS:
        shop.register_merchant(merchant_id=merchant.merchant_id, name=merchant.name, freight=merchant.freight)
    for listing in LISTINGS:
        shop.register_sku(listing.sku)
    _stock_the_warehouses(day)
    _add_tea_promotion(day)
    _launch_campaigns(day)


def _stock_the_warehouses(day: Day) -> None:
    for listing in LISTINGS:
        total = max(3, math.ceil(listing.units_per_100_orders * day.orders / 100))
        shares = apportion(total, [percent for _, percent in listing.warehouses])
        for (warehouse_id, _), units in zip(listing.warehouses, shares, strict=True):
            if units == 0:
                continue
            # Safety stock at a quarter of the delivery: busy SKUs raise alerts by evening.
            day.shop.set_up_stock(
                sku_id=listing.sku.sku_id, warehouse_id=warehouse_id,
                safety_stock=max(1, units // 4), reorder_quantity=units,
            )
            day.shop.receive_stock(
                sku_id=listing.sku.sku_id, warehouse_id=warehouse_id, quantity=units,
                reference=f"PO-{day.ids.token}-{listing.sku.sku_id}",
            )


def _add_tea_promotion(day: Day) -> None:
    # The id names the day, so a later run adds its own promotion instead of
    # rewriting this one; the windows do not overlap.
    day.shop.add_promotion(
        promotion_id=f"tea-festival-{day.opening:%Y%m%d}",
        terms=TEA_FESTIVAL,
        starts_at=day.opening,
        ends_at=day.opening + timedelta(days=1),
    )


def _launch_campaigns(day: Day) -> None:
    for funding, (name, terms) in CAMPAIGNS.items():
        campaign_id = day.shop.create_campaign(
            name=name, terms=terms,
            claim_starts_at=day.opening, claim_ends_at=day.opening + timedelta(days=1),
            validity=Validity(days_from_issue=7),
            total_quantity=max(5, day.orders // 3), per_customer_limit=1,
        )
        day.campaigns[funding] = (campaign_id, terms)
    # Members who opted in get the digital coupon pushed at opening.
    for customer_id in day.customers.ids[::3]:
        hand_out_coupon(day, "m-digital", customer_id, IssueChannel.PUSH)


def hand_out_coupon(day: Day, funding: str, customer_id: str, channel: IssueChannel) -> None:
    """Issue one coupon of the campaign ``funding`` pays for, if any are left for this customer."""
    campaign_id, terms = day.campaigns[funding]
    try:
        coupon_id = day.shop.issue_coupon(campaign_id=campaign_id, customer_id=customer_id, channel=channel)
    except CampaignRefused:
        return  # all gone, or this customer already has one: the storefront says so
    day.tally.coupons_issued += 1
    day.customers.wallets[customer_id].append(HeldCoupon(coupon_id, terms))
