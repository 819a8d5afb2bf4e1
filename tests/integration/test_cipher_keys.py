"""Keys checked before use (issue 11 item 4): a store opened with a wrong key, without the
key of an encrypted store, or with a key for a store written without one is refused with
``CipherKeyMismatch`` before anything is written, on SQLite and PostgreSQL alike; and the
settings never show the key or the store's password."""

from __future__ import annotations

import pytest
from eventsourcing.cryptography import AESCipher
from pydantic import ValidationError
from shop_fixtures import open_shop, stock_catalogue, stored_events

from ecomcore import CipherKeyMismatch, Settings, Shop
from ecomcore.infrastructure.store import is_postgres

KEY = AESCipher.create_key(16)
OTHER_KEY = AESCipher.create_key(16)


def written(store_url: str, key: str | None) -> int:
    """Write a stock receipt into the store (under ``key``); returns how many events it holds."""
    shop = open_shop(store_url, cipher_key=key)
    try:
        stock_catalogue(shop)
        shop.receive_stock(sku_id="A1", warehouse_id="w1", quantity=3, reference="secret-po")
        return stored_events(shop)
    finally:
        shop.close()


def events_in(store_url: str, key: str | None) -> int:
    shop = open_shop(store_url, cipher_key=key)
    try:
        return stored_events(shop)
    finally:
        shop.close()


CASES = {
    "wrong-key": (KEY, OTHER_KEY, "encrypted under another key"),
    "missing-key": (KEY, None, "encrypted: give its cipher key"),
    "unexpected-key": (None, KEY, "written without a cipher key"),
}


@pytest.mark.parametrize("case", CASES)
def test_a_key_that_does_not_fit_is_refused_on_open_and_nothing_is_written(store_url: str, case: str) -> None:
    """Opening refuses the key with CipherKeyMismatch; the store holds exactly what it held."""
    store_key, opened_with, words = CASES[case]
    before = written(store_url, store_key)
    with pytest.raises(CipherKeyMismatch, match=words) as caught:
        open_shop(store_url, cipher_key=opened_with)
    assert caught.value.code == "cipher_key_mismatch"
    for key in (KEY, OTHER_KEY):
        assert key not in str(caught.value)
    assert events_in(store_url, store_key) == before
    # The store still opens and loads with its own key.
    shop = open_shop(store_url, cipher_key=store_key)
    try:
        assert shop.stock_item("A1", "w1").on_hand == 3
    finally:
        shop.close()


def test_the_right_key_opens_an_encrypted_store_again(store_url: str) -> None:
    """A store written under a key reopens with it, and events stay ciphertext."""
    written(store_url, KEY)
    shop = open_shop(store_url, cipher_key=KEY)
    try:
        assert shop.stock_item("A1", "w1").on_hand == 3
        head = shop.store.recorder.max_notification_id()
        assert all(b"secret-po" not in n.state for n in shop.store.recorder.select_notifications(1, head))
    finally:
        shop.close()


def test_a_store_without_events_takes_the_key_it_is_next_opened_with(store_url: str) -> None:
    """Opening an empty store (say for `status`) without a key does not bind it: nothing is encrypted yet."""
    open_shop(store_url).close()
    assert written(store_url, KEY) > 0
    with pytest.raises(CipherKeyMismatch):
        open_shop(store_url)


def test_a_store_written_before_keys_were_checked_is_judged_by_its_first_event(store_url: str) -> None:
    """Without the key-check row (an older store), the first stored event decides; the right key
    then records the row."""
    written(store_url, KEY)
    shop = open_shop(store_url, cipher_key=KEY)
    _drop_check_table(shop)
    shop.close()
    for wrong in (OTHER_KEY, None):
        with pytest.raises(CipherKeyMismatch):
            open_shop(store_url, cipher_key=wrong)
    open_shop(store_url, cipher_key=KEY).close()  # accepted, and the row is written again
    with pytest.raises(CipherKeyMismatch, match="another key"):
        open_shop(store_url, cipher_key=OTHER_KEY)


def test_a_plain_store_written_before_keys_were_checked_refuses_a_key(store_url: str) -> None:
    """An older unencrypted store opened with a key is refused, judged by its first event."""
    written(store_url, None)
    shop = open_shop(store_url)
    _drop_check_table(shop)
    shop.close()
    with pytest.raises(CipherKeyMismatch, match="without a cipher key"):
        open_shop(store_url, cipher_key=KEY)
    assert events_in(store_url, None) > 0


def _drop_check_table(shop: Shop) -> None:
    with shop.store.recorder.datastore.transaction(commit=True) as cursor:
        cursor.execute("DROP TABLE ecomcore_cipher_check")


def test_settings_never_show_the_key_or_the_password() -> None:
    """repr and str of Settings mask the cipher key and the store URL's password; the URL
    stays a plain string for whoever opens the store."""
    url = "postgresql://shop:pa55word@db.example:5432/shop?host=/run/pg"
    settings = Settings(store_url=url, cipher_key=KEY)
    for shown in (repr(settings), str(settings)):
        assert KEY not in shown and "pa55word" not in shown
        assert "shop:***@db.example:5432/shop" in shown
    assert settings.store_url == url
    assert settings.cipher_key is not None and settings.cipher_key.get_secret_value() == KEY
    assert is_postgres(settings.store_url)


@pytest.mark.parametrize("bad", ["not base64!", "aGVsbG8=", AESCipher.create_key(16)[:-4]])
def test_a_malformed_key_is_refused_by_the_settings_without_repeating_it(bad: str) -> None:
    """A key that is not base64 of 16, 24 or 32 bytes is a settings error that does not print the key."""
    with pytest.raises(ValidationError) as caught:
        Settings(cipher_key=bad)
    assert bad not in str(caught.value)
