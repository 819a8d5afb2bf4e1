"""Configuration, from arguments or ``ECOMCORE_…`` environment variables."""

from __future__ import annotations

from datetime import timedelta

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE_URL = "sqlite:///ecomcore.sqlite"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ECOMCORE_", frozen=True, extra="ignore")

    store_url: str = DEFAULT_STORE_URL
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")
    payment_timeout: timedelta = timedelta(hours=24)
    after_sales_window: timedelta = timedelta(days=7)
    parcel_weight_limit_g: int = Field(20_000, gt=0)
    #: How often a command conflicting with a concurrent writer is tried in all.
    max_attempts: int = Field(8, ge=1)
    #: A snapshot every N events of a long-lived aggregate (stock items, campaigns).
    snapshot_interval: int = Field(200, ge=2)
    aggregate_cache_size: int = Field(10_000, ge=0)
    #: Base64 AES key: when set, stored events are encrypted (AES-GCM).
    cipher_key: str | None = None
    sqlite_lock_timeout_s: int = Field(30, ge=1)
    postgres_pool_size: int = Field(5, ge=1)
    #: Seconds to wait for a PostgreSQL connection (also for a free pooled one); the
    #: library tries 10 times, so a store that is down is noticed after about 10× this.
    postgres_connect_timeout_s: int = Field(5, ge=1, le=300)
