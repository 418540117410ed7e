"""`analyze-errors`: failures grouped by cause (error class, job type, normalised message).

The signature of a message is what stays the same when the same fault recurs; secrets in
URLs are masked before a message is shown.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.masking import mask_secrets
from dealertui.model import ErrorGroup, JobState
from dealertui.store.schema import job_events
from dealertui.store.states import FAILURE_STATES

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: dealer ids listed per error group
DEALER_IDS_SHOWN = 10
SIGNATURE_MAX = 200

_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
_UUID = re.compile(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", re.I)
#: 0x… or a run of 8+ hex digits with at least one letter and one digit
_HEX = re.compile(r"\b(?:0x[0-9a-f]+|(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{8,})\b", re.I)
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_QUOTED = re.compile(r"(?<![\w'])'[^'\n]*'(?!\w)|\"[^\"\n]*\"")
_SPACE = re.compile(r"\s+")
_SENTINEL = re.compile("\ue000(\ue001*)\ue002")
_TIMEOUT = re.compile(r"timed out|timeout", re.IGNORECASE)


def _split_url(raw: str) -> tuple[str, str]:
    """The URL and the trailing punctuation that belongs to the sentence around it."""
    url = raw.rstrip(".,;:!?)]}")
    return url, raw[len(url):]


def _ids_in(text: str) -> str:
    text = _UUID.sub("<uuid>", text)
    text = _HEX.sub("<id>", text)
    return _NUMBER.sub("<n>", text)


def _dealer_sub(text: str, dealer_id: str | None) -> str:
    if not dealer_id:
        return text
    pattern = rf"(?<![A-Za-z0-9_.-]){re.escape(dealer_id)}(?![A-Za-z0-9_])"
    return re.sub(pattern, "<dealer>", text)


def _normalize_url(url: str, dealer_id: str | None) -> str:
    """scheme://host[:port]/path with ids in the path replaced; no userinfo, query, fragment."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "<url>"
    return f"{parts.scheme}://{host}{port}{_ids_in(_dealer_sub(parts.path, dealer_id))}"


def normalize_error(msg: str, dealer_id: str | None = None) -> str:
    """The signature of an error message: what stays the same when the same fault recurs.

    URLs lose userinfo, query and fragment, and the ids in their paths; *dealer_id* (the
    failing job's dealer) becomes ``<dealer>``; uuids ``<uuid>``; hex ids ``<id>``; quoted
    values ``<v>``; numbers ``<n>``. Whitespace is collapsed and the result cut to 200 chars.
    """
    urls: list[str] = []

    def keep_url(m: re.Match[str]) -> str:
        url, tail = _split_url(m.group(0))
        urls.append(_normalize_url(url, dealer_id))
        # a placeholder of private-use characters, which no later pattern touches
        return "\ue000" + "\ue001" * (len(urls) - 1) + "\ue002" + tail

    text = _URL.sub(keep_url, msg)
    text = _dealer_sub(text, dealer_id)
    text = _QUOTED.sub("<v>", text)
    text = _ids_in(text)
    text = _SENTINEL.sub(lambda m: urls[len(m.group(1))], text)
    text = _SPACE.sub(" ", text).strip()
    return text[:SIGNATURE_MAX]


def error_class(to_state: str, message: str, *, exhausted: bool = False) -> str:
    """"timeout" for a timed-out attempt, else "transient" for a failure that was (or would
    have been, with attempts left) retried, else "permanent"."""
    if _TIMEOUT.search(message):
        return "timeout"
    return "transient" if to_state == JobState.RETRYING or exhausted else "permanent"


def fingerprint(error_class: str, job_type: str, signature: str) -> str:
    """A short stable id of an error group, to name it in `retry/pause --fingerprint`."""
    digest = hashlib.sha1(f"{error_class}|{job_type}|{signature}".encode()).hexdigest()
    return digest[:8]


async def error_groups(
    store: JobStore, *, since: float | None = None, limit: int = 50, max_events: int = 200_000
) -> list[ErrorGroup]:
    """Failures (job_events that went to failed or retrying with an error) grouped by error
    class, job type and normalised message, most frequent first.

    Each group: ``signature``, ``error_class`` (transient, permanent or timeout; a failure
    that ended a job whose earlier attempts were retried with the same signature counts as
    transient: its attempts ran out), ``job_type``, ``count`` (events), ``jobs`` (distinct
    jobs), ``dealers`` (distinct dealers), ``dealer_ids`` (up to 10, sorted),
    ``top_dealers`` (up to 5 ``[dealer_id, count]``, most failures first), ``first_at``,
    ``last_at`` and ``example`` (the newest raw message, secrets masked). Only events at or
    after *since* count, and at most the newest *max_events* of them.
    """

    async def tx(conn: AsyncConnection) -> Sequence[Any]:
        q = (
            select(
                job_events.c.id, job_events.c.job_id, job_events.c.dealer_id,
                job_events.c.job_type, job_events.c.at, job_events.c.to_state,
                job_events.c.error,
            )
            .where(
                job_events.c.error.is_not(None),
                job_events.c.to_state.in_(FAILURE_STATES),
            )
            .order_by(job_events.c.id.desc())
            .limit(max_events)
        )
        if since is not None:
            q = q.where(job_events.c.at >= since)
        return (await conn.execute(q)).all()

    rows = list(reversed(await store.db.run(tx, write=False)))
    signatures: dict[tuple[str, str], str] = {}
    retried: set[tuple[int, str]] = set()
    groups: dict[tuple[str, str, str], _Group] = {}
    for r in rows:
        sig = signatures.get((r.error, r.dealer_id))
        if sig is None:
            sig = signatures[(r.error, r.dealer_id)] = normalize_error(r.error, r.dealer_id)
        if r.to_state == JobState.RETRYING:
            retried.add((r.job_id, sig))
        cls = error_class(r.to_state, r.error, exhausted=(r.job_id, sig) in retried)
        g = groups.get((cls, r.job_type, sig))
        if g is None:
            g = groups[(cls, r.job_type, sig)] = _Group(sig, cls, r.job_type, r.at, r.at,
                                                       r.error)
        g.count += 1
        g.jobs.add(r.job_id)
        g.dealers[r.dealer_id] += 1
        g.first_at = min(g.first_at, r.at)
        if r.at >= g.last_at:
            g.last_at, g.example = r.at, r.error
    out = [g.result() for g in groups.values()]
    out.sort(key=lambda g: (-g["count"], -g["last_at"], g["job_type"], g["signature"]))
    return out[:limit]


@dataclass(slots=True)
class _Group:
    """One group while the events are counted."""

    signature: str
    error_class: str
    job_type: str
    first_at: float
    last_at: float
    example: str
    count: int = 0
    jobs: set[int] = field(default_factory=set)
    dealers: Counter[str] = field(default_factory=Counter)

    def result(self) -> ErrorGroup:
        job_ids = sorted(self.jobs)
        dealer_ids = sorted(self.dealers)
        top = sorted(self.dealers.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        return ErrorGroup(
            signature=self.signature, error_class=self.error_class, job_type=self.job_type,
            count=self.count, first_at=self.first_at, last_at=self.last_at,
            example=mask_secrets(self.example), jobs=len(job_ids),
            job_ids=job_ids,  # for group actions: retry or pause the whole group
            all_dealer_ids=dealer_ids,
            fingerprint=fingerprint(self.error_class, self.job_type, self.signature),
            dealers=len(dealer_ids), dealer_ids=dealer_ids[:DEALER_IDS_SHOWN],
            top_dealers=[[d, n] for d, n in top],
        )
