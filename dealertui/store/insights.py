"""Read-only questions about the job store: health facts and failures grouped by cause.

Each function is one read transaction; nothing here writes. Times are float epoch seconds
from the store's clock, as everywhere in the store.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from dealertui.store.schema import breakers, controls, dealers, job_events, jobs, workers

if TYPE_CHECKING:
    from dealertui.store.jobstore import JobStore

#: job_events.to_state values that end one attempt
OUTCOME_STATES = ("succeeded", "failed", "retrying")
#: stopped workers reported beside the live ones (newest first)
STOPPED_WORKERS_SHOWN = 10
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
_SECRET_PARAM = re.compile(r"pass|secret|token|key|auth|sig|cred", re.IGNORECASE)
_TIMEOUT = re.compile(r"timed out|timeout", re.IGNORECASE)


def _split_url(raw: str) -> tuple[str, str]:
    """The URL and the trailing punctuation that belongs to the sentence around it."""
    url = raw.rstrip(".,;:!?)]}")
    return url, raw[len(url):]


def _mask_url(url: str) -> str:
    """*url* with a userinfo password and secret-looking query values replaced by ***."""
    try:
        parts = urlsplit(url)
        netloc = parts.netloc
        if parts.password is not None:
            user, _, host = netloc.rpartition("@")
            netloc = f"{user.partition(':')[0]}:***@{host}"
        query = parts.query
        if query and any(_SECRET_PARAM.search(k) for k, _ in parse_qsl(query, True)):
            query = urlencode(
                [(k, "***" if _SECRET_PARAM.search(k) else v) for k, v in parse_qsl(query, True)],
                safe="*",
            )
        return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))
    except ValueError:
        return "<url>"


def mask_secrets(msg: str) -> str:
    """*msg* with passwords and secret query values of any URL in it masked."""

    def one(m: re.Match[str]) -> str:
        url, tail = _split_url(m.group(0))
        return _mask_url(url) + tail

    return _URL.sub(one, msg)


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
    return "transient" if to_state == "retrying" or exhausted else "permanent"


async def health_facts(
    store: JobStore, *, heartbeat_within_s: float, window_s: float
) -> dict[str, Any]:
    """What `health` judges, read in one transaction.

    Keys: ``now``; ``stuck_jobs`` (running with an expired lease) and
    ``oldest_expired_lease_at``; ``workers`` (live rows, then up to 10 stopped ones, newest
    first) with ``live_workers``; ``newest_heartbeat_at`` (live workers that process jobs);
    ``last_seen_at`` (also counting when stopped ones stopped); ``fresh_workers`` (live
    with a heartbeat within *heartbeat_within_s*); ``open_breakers`` (state open or
    half_open); ``outcomes`` (succeeded/failed/retrying events in the last *window_s*; a
    retrying event without an error, a job released by a stopping worker, is no outcome);
    ``ready_due``, ``retrying_due``, ``ready_total`` and ``paused_globally``.
    """
    now = store.clock()

    async def tx(conn: AsyncConnection) -> dict[str, Any]:
        stuck, oldest = (
            await conn.execute(
                select(func.count(), func.min(jobs.c.locked_until)).where(
                    jobs.c.state == "running", jobs.c.locked_until < now
                )
            )
        ).one()
        live = (
            await conn.execute(
                select(workers).where(workers.c.stopped_at.is_(None))
                .order_by(workers.c.heartbeat_at.desc(), workers.c.id)
            )
        ).all()
        stopped = (
            await conn.execute(
                select(workers).where(workers.c.stopped_at.is_not(None))
                .order_by(workers.c.stopped_at.desc(), workers.c.id)
                .limit(STOPPED_WORKERS_SHOWN)
            )
        ).all()
        processors = [w for w in live if w.kind != "console"]
        seen = [w.heartbeat_at for w in processors] + [
            w.stopped_at for w in stopped if w.kind != "console"
        ]
        open_rows = await conn.execute(
            select(breakers.c.key, breakers.c.dealer_id, breakers.c.state, breakers.c.opened_at,
                   breakers.c.failures, breakers.c.calls)
            .where(breakers.c.state.in_(["open", "half_open"]))
            .order_by(breakers.c.opened_at, breakers.c.key)
        )
        outcomes = dict.fromkeys(OUTCOME_STATES, 0)
        for state, n in await conn.execute(
            select(job_events.c.to_state, func.count())
            .where(
                job_events.c.at >= now - window_s,
                job_events.c.to_state.in_(OUTCOME_STATES),
                # a job handed back by a stopping worker goes to retrying with no error
                (job_events.c.to_state != "retrying") | job_events.c.error.is_not(None),
            )
            .group_by(job_events.c.to_state)
        ):
            outcomes[state] = n
        ready_due, ready_total, retrying_due = (
            await conn.execute(
                select(
                    func.count().filter(jobs.c.state == "ready", jobs.c.run_after <= now),
                    func.count().filter(jobs.c.state == "ready"),
                    func.count().filter(jobs.c.state == "retrying", jobs.c.run_after <= now),
                ).where(jobs.c.state.in_(["ready", "retrying"]))
            )
        ).one()
        paused = (
            await conn.execute(
                select(func.count()).select_from(controls).where(
                    controls.c.scope == "global", controls.c.paused == 1
                )
            )
        ).scalar_one()
        return {
            "now": now,
            "stuck_jobs": stuck,
            "oldest_expired_lease_at": oldest,
            "workers": [dict(w._mapping) for w in (*live, *stopped)],
            "live_workers": len(live),
            "newest_heartbeat_at": max((w.heartbeat_at for w in processors), default=None),
            "last_seen_at": max(seen, default=None),
            "fresh_workers": sum(
                1 for w in processors if w.heartbeat_at >= now - heartbeat_within_s
            ),
            # not counted as workers (a console's engine stops when its console closes), but
            # named, so health does not say that nothing is running
            "console_engines": sum(
                1 for w in live
                if w.kind == "console" and w.heartbeat_at >= now - heartbeat_within_s
            ),
            "open_breakers": [dict(r._mapping) for r in open_rows],
            "outcomes": outcomes,
            "window_s": window_s,
            "ready_due": ready_due,
            "retrying_due": retrying_due,
            "ready_total": ready_total,
            "paused_globally": bool(paused),
        }

    return await store.db.run(tx, write=False)


def fingerprint(error_class: str, job_type: str, signature: str) -> str:
    """A short stable id of an error group, to name it in `retry/pause --fingerprint`."""
    digest = hashlib.sha1(f"{error_class}|{job_type}|{signature}".encode()).hexdigest()
    return digest[:8]


async def error_groups(
    store: JobStore, *, since: float | None = None, limit: int = 50, max_events: int = 200_000
) -> list[dict[str, Any]]:
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
                job_events.c.to_state.in_(["failed", "retrying"]),
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
    groups: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in rows:
        sig = signatures.get((r.error, r.dealer_id))
        if sig is None:
            sig = signatures[(r.error, r.dealer_id)] = normalize_error(r.error, r.dealer_id)
        if r.to_state == "retrying":
            retried.add((r.job_id, sig))
        cls = error_class(r.to_state, r.error, exhausted=(r.job_id, sig) in retried)
        g = groups.get((cls, r.job_type, sig))
        if g is None:
            g = groups[(cls, r.job_type, sig)] = {
                "signature": sig, "error_class": cls, "job_type": r.job_type, "count": 0,
                "_jobs": set(), "_dealers": Counter(), "first_at": r.at, "last_at": r.at,
                "example": r.error,
            }
        g["count"] += 1
        g["_jobs"].add(r.job_id)
        g["_dealers"][r.dealer_id] += 1
        g["first_at"] = min(g["first_at"], r.at)
        if r.at >= g["last_at"]:
            g["last_at"], g["example"] = r.at, r.error
    out = []
    for g in groups.values():
        dealers: Counter[str] = g.pop("_dealers")
        job_ids = sorted(g.pop("_jobs"))
        g["jobs"] = len(job_ids)
        g["job_ids"] = job_ids  # for group actions: retry or pause the whole group
        g["all_dealer_ids"] = sorted(dealers)
        g["fingerprint"] = fingerprint(g["error_class"], g["job_type"], g["signature"])
        g["dealers"] = len(dealers)
        g["dealer_ids"] = sorted(dealers)[:DEALER_IDS_SHOWN]
        g["top_dealers"] = [
            [d, n] for d, n in sorted(dealers.items(), key=lambda kv: (-kv[1], kv[0]))[:5]
        ]
        g["example"] = mask_secrets(g["example"])
        out.append(g)
    out.sort(key=lambda g: (-g["count"], -g["last_at"], g["job_type"], g["signature"]))
    return out[:limit]


#: a dealer whose oldest due ready job has waited longer than this is starved
STARVED_AFTER_S = 60.0
FAIRNESS_WINDOW_S = 300.0


_OLDEST_CLAIMABLE = text(
    """
    SELECT j.dealer_id, min(coalesce(j.ready_at, j.run_after)) FROM jobs j
    WHERE j.state = 'ready' AND j.run_after <= :now
      AND NOT EXISTS (SELECT 1 FROM controls c WHERE c.paused = 1 AND (
            (c.scope = 'global')
            OR (c.scope = 'dealer' AND c."key" = j.dealer_id)
            OR (c.scope = 'type' AND c."key" = j.job_type)))
      AND NOT EXISTS (SELECT 1 FROM breakers b WHERE b.state <> 'closed'
            AND b.job_type = j.job_type AND (b.dealer_id IS NULL OR b.dealer_id = j.dealer_id))
    GROUP BY j.dealer_id
    """
)


async def oldest_claimable(conn: AsyncConnection, now: float) -> dict[str, float]:
    """Per dealer, since when its oldest due ready job has waited — counting only jobs a
    worker could claim now: a job held back by a pause or a breaker that is not closed is
    waiting on purpose, not starving (the fairness meter must not blame the scheduler)."""
    return {d: t for d, t in (await conn.execute(_OLDEST_CLAIMABLE, {"now": now})).all()}


async def fairness(
    store: JobStore,
    *,
    window_s: float = FAIRNESS_WINDOW_S,
    starved_after_s: float = STARVED_AFTER_S,
) -> dict[str, dict[str, Any]]:
    """Per dealer: share of the outcomes recorded in the last *window_s* (0..1), seconds since
    it last got a slot, how long its oldest due ready job has waited, and `starved` when that
    wait exceeds *starved_after_s*."""
    now = store.clock()

    async def tx(conn: AsyncConnection) -> dict[str, dict[str, Any]]:
        served = {
            r.id: r.last_served_at
            for r in await conn.execute(select(dealers.c.id, dealers.c.last_served_at))
        }
        done: dict[str, int] = dict(
            (await conn.execute(
                text(
                    "SELECT dealer_id, count(*) FROM job_events WHERE at >= :since "
                    "AND to_state IN ('succeeded', 'failed', 'retrying') "
                    # a job handed back by a stopping worker (retrying, no error) is no
                    # outcome, as in health_facts
                    "AND (to_state <> 'retrying' OR error IS NOT NULL) GROUP BY dealer_id"
                ),
                {"since": now - window_s},
            )).all()
        )
        waiting = await oldest_claimable(conn, now)
        total = sum(done.values()) or 0
        out: dict[str, dict[str, Any]] = {}
        for dealer_id in sorted(served):
            last = served[dealer_id] or None
            oldest = waiting.get(dealer_id)
            wait = round(now - oldest, 1) if oldest is not None else None
            out[dealer_id] = {
                "share": round(done.get(dealer_id, 0) / total, 4) if total else 0.0,
                "outcomes": done.get(dealer_id, 0),
                "since_last_slot_s": round(now - last, 1) if last else None,
                "oldest_ready_wait_s": wait,
                "starved": wait is not None and wait > starved_after_s,
            }
        return out

    return await store.db.run(tx, write=False)
