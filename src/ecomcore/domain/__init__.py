"""The domain: aggregates, their events, and the pure rules they follow (no I/O).

Aggregates, one module each: ``checkout`` (what the customer pays for, as a whole),
``order`` (one merchant's part of it; after-sales rules in ``after_sales``),
``stock_item``, ``coupon`` (and ``CouponCampaign``), ``shipment``.  Pure rules:
``pricing`` (money, promotion choice, coupon slots), ``allocation`` (warehouses at
placement), ``recommendation``, ``shipment.plan_parcels``.  Values: ``values``
(the ``Value`` base and input bounds), ``parcels``, ``catalogue``, ``money``.
``renames`` lists the topics of events stored under former names.

Facts recorded twice, and which aggregate is the source of truth:

- **Payments.**  ``Checkout.Paid`` / ``Checkout.LatePaymentReceived`` record the money
  the provider took for the whole checkout: the Checkout is the source of truth for
  payments (what was paid, by which payment id, once).  ``Order.Paid`` /
  ``Order.LatePaymentReceived`` record each order's share of it, in the same
  transaction, because the order's own books (refunds never above what it was paid,
  reconciliation per merchant) need it.  Both shapes share one definition,
  ``checkout.PaymentEvent``.
- **Shipment progress.**  The Shipment aggregate is the source of truth for a parcel:
  carrier, waybill, tracking, delivery, items.  The Order records the steps that change
  what it may do (``Order.ShipmentDispatched`` / ``ShipmentDelivered`` /
  ``ShipmentFailed``, as ``parcels.ShipmentProgress``), in the same transaction, so its
  state and its after-sales rules read from its own history alone.
"""
