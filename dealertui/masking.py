"""Secrets out of everything shown: the one URL masker (config errors, database names in
messages and logs, http handler URLs, error messages grouped by `analyze-errors`).

Written here rather than with urllib.parse or SQLAlchemy's URL: both refuse or mangle what a
user may type (a raw '/' or '@' in a password, a malformed port), and a masker that raises or
gives up on a bad URL would show it whole in the very error that says it is bad.
"""

from __future__ import annotations

import re

#: query parameters whose values are secrets (?password=, ?token=, ?api_key=, ?sig=, …)
_SECRET_PARAM = re.compile(
    r"(?i)([?&][^=&#]*(?:pass|secret|token|key|auth|sig|cred)[^=&#]*=)[^&#]*")
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")


def mask_url(url: str) -> str:
    """*url* with its userinfo password and secret-looking query values replaced by `***`,
    e.g. `postgresql://user:***@host/db`; a URL without secrets comes back unchanged."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        scheme, rest = "", url
    # The userinfo ends at the last '@' of the authority (so an '@' in the query is not taken
    # for it), else at the last '@' at all (so a password with a raw '/' is masked too).
    ends = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
    at = rest.rfind("@", 0, min(ends, default=len(rest)))
    at = at if at >= 0 else rest.rfind("@")
    user, colon, _ = rest[: max(at, 0)].partition(":")
    if colon and "/" not in user:
        rest = f"{user}:***@{rest[at + 1 :]}"
    return scheme + sep + _SECRET_PARAM.sub(r"\1***", rest)


def mask_secrets(text: str) -> str:
    """*text* with every URL in it masked (trailing sentence punctuation kept as it was)."""

    def one(m: re.Match[str]) -> str:
        raw = m.group(0)
        url = raw.rstrip(".,;:!?)]}")
        return mask_url(url) + raw[len(url):]

    return _URL.sub(one, text)
