"""Secrets never shown: passwords in URLs and the cipher key are masked in every line the
command prints or logs (``postgresql://user:***@host/db``)."""

from __future__ import annotations

import os
import re
from urllib.parse import quote, unquote, urlsplit

#: ``scheme://user:password@``: everything between the first ``:`` after the user and the
#: last ``@`` before the host is the password (an unencoded ``@`` in it included).
_URL_PASSWORD = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^\s/:@'\"]*:)[^\s/'\"]*@")
#: libpq's keyword form (``password=…``), which a driver's message may repeat.
_KEYWORD_PASSWORD = re.compile(r"(?P<head>\bpassword\s*=\s*)(?:'[^']*'|\S+)", re.IGNORECASE)
#: Secrets shorter than this are masked only where they stand in a URL (a literal search
#: for one or two characters would mask every occurrence of them in ordinary words).
_SHORTEST_LITERAL = 4

_literals: set[str] = set()


def mask(text: str) -> str:
    """``text`` without the passwords and keys this process knows of, nor any URL's password."""
    text = _URL_PASSWORD.sub(r"\g<head>***@", text)
    text = _KEYWORD_PASSWORD.sub(r"\g<head>***", text)
    for secret in sorted(_literals, key=len, reverse=True):
        text = text.replace(secret, "***")
    return text


def remember_key(key: str | None) -> None:
    """Mask this key (a cipher key) wherever it would appear, from now on."""
    if key and len(key.strip()) >= _SHORTEST_LITERAL:
        _literals.update({key, key.strip()})


def remember_url(url: str | None) -> None:
    """Mask the password of this URL (as written in it, and decoded) wherever it would appear."""
    password = _password_of(url) if url else None
    if password:
        forms = (password, unquote(password), quote(password, safe=""))
        _literals.update(form for form in forms if len(form) >= _SHORTEST_LITERAL)


def remember_environment_secrets() -> None:
    """The cipher key and the URLs' passwords that the environment gives."""
    remember_key(os.environ.get("ECOMCORE_CIPHER_KEY"))
    remember_url(os.environ.get("ECOMCORE_STORE_URL"))
    remember_url(os.environ.get("ECOMCORE_READ_MODELS_URL"))


def _password_of(url: str) -> str | None:
    try:
        password = urlsplit(url).password
    except ValueError:
        password = None
    if password is None:
        found = re.search(r"://[^\s/:@]*:([^\s/]*)@", url)  # what urlsplit would not parse
        password = found.group(1) if found else None
    return password or None
