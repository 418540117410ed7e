"""The one URL masker (dealertui/masking.py): each of the three it replaced got a case wrong
(a raw '/' in a password shown whole, ?password= left, sqlite:/// paths mangled)."""

from __future__ import annotations

import pytest

from dealertui.masking import mask_secrets, mask_url


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://user:secret@host/db", "postgresql://user:***@host/db"),
        ("postgresql://user:se/cret@host:5432/db", "postgresql://user:***@host:5432/db"),
        ("postgresql://user@host/db?password=secret", "postgresql://user@host/db?password=***"),
        ("postgresql+asyncpg://u:p@h:5432/db", "postgresql+asyncpg://u:***@h:5432/db"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("sqlite:////data/a:b@c.db", "sqlite:////data/a:b@c.db"),
        ("https://h/x?token=abc&x=1", "https://h/x?token=***&x=1"),
        ("https://u:p@h/a?api_key=zz#frag", "https://u:***@h/a?api_key=***#frag"),
        ("not a url", "not a url"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_secrets_masks_every_url_in_a_message_and_keeps_the_sentence() -> None:
    msg = "GET https://x:pw@h/a?sig=1. then postgresql://app:hunter2@db/x failed"
    assert mask_secrets(msg) == ("GET https://x:***@h/a?sig=***. then "
                                 "postgresql://app:***@db/x failed")
