"""ecomcore: the event-sourced domain core of an e-commerce back office.

    from ecomcore import Shop
    shop = Shop("sqlite:///shop.sqlite")
"""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

from ecomcore.application.commands import CartItem
from ecomcore.application.receipts import CheckoutReceipt, PaymentReceipt, RefundReceipt
from ecomcore.application.shop import Shop
from ecomcore.domain.after_sales import (
    LineRefundable,
    RefundableSummary,
    RefundKind,
    RefundRecord,
    ReturnCase,
    ReturnStatus,
)
from ecomcore.domain.catalogue import Merchant, Promotion, Sku, Warehouse
from ecomcore.domain.checkout import CancelReason
from ecomcore.domain.coupon import CouponState, IssueChannel, Validity
from ecomcore.domain.errors import (
    AlreadyExists,
    AmountTooLarge,
    CampaignRefused,
    CipherKeyMismatch,
    ConcurrencyConflict,
    CouponNotUsable,
    DomainError,
    EcomcoreError,
    IllegalTransition,
    InsufficientStock,
    InvalidCommand,
    NotFound,
    PaymentRefused,
    PromotionConflict,
    RefundRefused,
    ReturnRefused,
    StoreCorrupted,
    StoreError,
    StoreUnavailable,
)
from ecomcore.domain.order import OrderState, RefundStatus
from ecomcore.domain.pricing import (
    PLATFORM,
    CouponKind,
    CouponTerms,
    FreightBasis,
    FreightTemplate,
    PromotionTerms,
    PromotionTier,
    Scope,
)
from ecomcore.domain.shipment import ShipmentState
from ecomcore.domain.values import (
    MAX_AMOUNT,
    MAX_QUANTITY,
    MAX_STOCK_QUANTITY,
    MAX_UNIT_PRICE,
    MAX_WEIGHT_G,
)
from ecomcore.infrastructure.clock import Clock, ManualClock, SystemClock
from ecomcore.infrastructure.settings import Settings

try:
    __version__ = _version("ecomcore")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "__version__",
    "MAX_AMOUNT",
    "MAX_QUANTITY",
    "MAX_STOCK_QUANTITY",
    "MAX_UNIT_PRICE",
    "MAX_WEIGHT_G",
    "PLATFORM",
    "AlreadyExists",
    "AmountTooLarge",
    "CampaignRefused",
    "CancelReason",
    "CartItem",
    "CheckoutReceipt",
    "CipherKeyMismatch",
    "Clock",
    "ConcurrencyConflict",
    "CouponKind",
    "CouponNotUsable",
    "CouponState",
    "CouponTerms",
    "DomainError",
    "EcomcoreError",
    "FreightBasis",
    "FreightTemplate",
    "IllegalTransition",
    "InsufficientStock",
    "InvalidCommand",
    "IssueChannel",
    "ManualClock",
    "Merchant",
    "NotFound",
    "OrderState",
    "PaymentReceipt",
    "PaymentRefused",
    "Promotion",
    "PromotionConflict",
    "PromotionTerms",
    "PromotionTier",
    "LineRefundable",
    "RefundKind",
    "RefundReceipt",
    "RefundRecord",
    "RefundRefused",
    "RefundStatus",
    "RefundableSummary",
    "ReturnCase",
    "ReturnRefused",
    "ReturnStatus",
    "Scope",
    "Settings",
    "ShipmentState",
    "Shop",
    "Sku",
    "StoreCorrupted",
    "StoreError",
    "StoreUnavailable",
    "SystemClock",
    "Validity",
    "Warehouse",
]
