"""Configuration, from arguments or ``ECOMCORE_…`` environment variables.

Secrets never show: ``cipher_key`` is a ``SecretStr`` (``settings.cipher_key.get_secret_value()``
gives the key), and ``repr(settings)`` shows the store URL with its password masked
(``settings.store_url`` itself stays the plain URL, for opening the store).
"""

from __future__ import annotations

import binascii
from base64 import b64decode
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_STORE_URL = "sqlite:///ecomcore.sqlite"

#: AES key sizes in bytes (AES-128, AES-192, AES-256), before base64.
CIPHER_KEY_SIZES = (16, 24, 32)


def masked_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``: safe to print or log."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    port = f":{parts.port}" if parts.port is not None else ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


class Settings(BaseSettings):
    # hide_input_in_errors: a refused setting's message must not repeat a key or a password.
    model_config = SettingsConfigDict(env_prefix="ECOMCORE_", frozen=True, extra="ignore", hide_input_in_errors=True)

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
    #: Base64 AES key (16, 24 or 32 bytes): when set, stored event payloads are encrypted
    #: (AES-GCM) and the store refuses to open under any other key.
    cipher_key: SecretStr | None = None
    sqlite_lock_timeout_s: int = Field(30, ge=1)
    postgres_pool_size: int = Field(5, ge=1)
    #: Seconds to wait for a PostgreSQL connection (also for a free pooled one); the
    #: library tries 10 times, so a store that is down is noticed after about 10× this.
    postgres_connect_timeout_s: int = Field(5, ge=1, le=300)

    @field_validator("cipher_key")
    @classmethod
    def _cipher_key_is_an_aes_key(cls, key: SecretStr | None) -> SecretStr | None:
        # The message never repeats the key: validation errors get printed.
        if key is None:
            return None
        try:
            size = len(b64decode(key.get_secret_value().encode(), validate=True))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            raise ValueError("cipher_key must be a base64-encoded AES key") from None
        if size not in CIPHER_KEY_SIZES:
            raise ValueError(f"cipher_key must encode 16, 24 or 32 bytes (an AES key), not {size}")
        return key

    def __repr_args__(self) -> Iterator[tuple[str | None, Any]]:
        for name, value in super().__repr_args__():
            yield name, masked_url(value) if name == "store_url" and isinstance(value, str) else value
