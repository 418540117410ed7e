"""Operator actions, written once and called by the CLI and the console alike.

Each action validates what the operator named (dealer ids, job types, job ids) against the
config and the store, then makes exactly one store call, so every action is one transaction.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping, Sequence
from typing import Any

from dealertui.config import Config
from dealertui.errors import UsageError
from dealertui.model import (
    DEALER_ID_HINT,
    ActionResult,
    BlastRadius,
    EnqueueResult,
    ErrorGroup,
    dealer_name_problem,
    is_valid_dealer_id,
)
from dealertui.store import JobStore, dealerops
from dealertui.text import plural


def operator_identity() -> str:
    """Who acts: OS user and host, as the audit trail records it."""
    try:
        user = getpass.getuser()
    except Exception:  # no passwd entry (containers): fall back to the uid
        user = f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def unconfigured_dealers(config: Config, dealer_ids: Sequence[str]) -> list[str]:
    """Dealers in the database that the config no longer names, when it names any (a config
    without [[dealers]] leaves them to `dealers add`)."""
    named = {d.id for d in config.dealers}
    return sorted(d for d in dealer_ids if d not in named) if named else []


def check_names(config: Config, *, dealer_ids: Sequence[str] | None = None,
                types: Sequence[str] | None = None) -> None:
    """The checks that need no database: dealer id syntax, job types of the config. The CLI
    runs them before it opens (and so perhaps creates) the database."""
    for t in types or ():
        if t not in config.job_types:
            known = ", ".join(config.job_types)
            raise UsageError(f"unknown job type {t!r} (known: {known}).")
    for d in dealer_ids or ():
        if not is_valid_dealer_id(d):
            raise UsageError(f"invalid dealer id {d!r}: {DEALER_ID_HINT}.")


class Operator:
    """The actions an operator can take, with the checks that keep them sane."""

    def __init__(self, store: JobStore, config: Config, who: str | None = None) -> None:
        self.store = store
        self.config = config
        self.who = who or operator_identity()

    def _check_types(self, types: Sequence[str] | None) -> None:
        check_names(self.config, types=types)

    async def check_dealers(self, dealer_ids: Sequence[str]) -> None:
        check_names(self.config, dealer_ids=dealer_ids)
        known = set(await self.store.dealer_ids())
        for d in dealer_ids:
            if d not in known:
                raise UsageError(
                    f"unknown dealer {d!r}; add it with 'dealertui dealers add {d}'."
                )

    async def add_dealers(self, items: Sequence[tuple[str, str | None]]) -> int:
        for dealer_id, name in items:
            check_names(self.config, dealer_ids=[dealer_id])
            if (problem := dealer_name_problem(name)) is not None:
                raise UsageError(problem)
        return await self.store.add_dealers(items, by=self.who)

    async def set_dealer_disabled(self, dealer_id: str, disabled: bool) -> bool:
        """Disable a dealer (its jobs are kept and never claimed) or enable it again; False
        when it already was."""
        check_names(self.config, dealer_ids=[dealer_id])
        return await dealerops.set_disabled(self.store, dealer_id, disabled, by=self.who)

    async def disabled_dealers(self) -> list[str]:
        return await dealerops.disabled_dealers(self.store)

    async def remove_dealer(self, dealer_id: str, *, cancel_pending: bool = False
                            ) -> dealerops.Removal:
        """Remove a dealer and its jobs (refused while one runs; unfinished ones only with
        *cancel_pending*). A dealer the config lists would come back on the next open."""
        check_names(self.config, dealer_ids=[dealer_id])
        if any(d.id == dealer_id for d in self.config.dealers):
            where = self.config.source or "the config"
            raise UsageError(
                f"dealer {dealer_id} is listed under [[dealers]] in {where}; remove it there "
                "first, or it is added again by the next command."
            )
        return await dealerops.remove_dealer(self.store, dealer_id,
                                             cancel_pending=cancel_pending, by=self.who)

    async def enqueue(
        self,
        dealer_ids: Sequence[str] = (),
        *,
        all_dealers: bool = False,
        types: Sequence[str] | None = None,
        payload: Mapping[str, Any] | None = None,
        allow_duplicate: bool = False,
    ) -> EnqueueResult:
        """Enqueue a pipeline for each dealer named (or every dealer), skipping the dealers
        whose pipeline of the same types is still pending unless *allow_duplicate*."""
        self._check_types(types)
        if all_dealers:
            every = await self.store.list_dealers()
            if not every:
                raise UsageError(
                    "there are no dealers yet; add one with 'dealertui dealers add ID'."
                )
            # disabled ones are skipped (the CLI names them)
            dealer_ids = [d.id for d in every if d.disabled_at is None]
            if not dealer_ids:
                raise UsageError(
                    f"every dealer is disabled ({plural(len(every), 'dealer')}); enable one "
                    "with 'dealertui dealers enable ID'."
                )
        elif not dealer_ids:
            raise UsageError("enqueue needs --dealer ID or --all-dealers.")
        else:
            await self.check_dealers(dealer_ids)
            disabled = set(await dealerops.disabled_dealers(self.store))
            for d in dealer_ids:
                if d in disabled:
                    raise UsageError(
                        f"dealer {d} is disabled, so its jobs would never run; enable it with "
                        f"'dealertui dealers enable {d}' first."
                    )
        return await self.store.enqueue_pipelines(
            dealer_ids, types or None, payload=payload, by=self.who,
            allow_duplicate=allow_duplicate)

    async def retry(
        self,
        *,
        job_ids: Sequence[int] | None = None,
        dealer_id: str | None = None,
        job_type: str | None = None,
        all_failed: bool = False,
        reason: str | None = None,
    ) -> ActionResult:
        """Retry failed/blocked jobs (their blocked descendants follow)."""
        self._check_types([job_type] if job_type else None)
        if dealer_id is not None:
            await self.check_dealers([dealer_id])
        if job_ids:
            await self._check_jobs(job_ids)
        return await self.store.retry(
            job_ids=job_ids or None,
            dealer_id=dealer_id,
            job_type=job_type,
            all_failed=all_failed,
            by=self.who,
            reason=reason,
        )

    async def _check_jobs(self, job_ids: Sequence[int]) -> None:
        found = {j.id for j in await self.store.list_jobs(job_ids=job_ids)}
        for i in job_ids:
            if i not in found:
                raise UsageError(f"there is no job {i}.")

    async def cancel(self, job_ids: Sequence[int], reason: str | None = None) -> ActionResult:
        """Cancel jobs (any state but succeeded); their waiting descendants become blocked."""
        await self._check_jobs(job_ids)
        return await self.store.cancel(job_ids, by=self.who, reason=reason)

    async def set_paused(
        self,
        paused: bool,
        *,
        dealer_id: str | None = None,
        job_type: str | None = None,
        reason: str | None = None,
    ) -> None:
        """Pause or resume a dealer, a job type, or everything (neither given)."""
        self._check_types([job_type] if job_type else None)
        if dealer_id is not None:
            await self.check_dealers([dealer_id])
        await self.store.set_paused(
            paused, dealer_id=dealer_id, job_type=job_type, by=self.who, reason=reason
        )

    async def set_schedule_paused(self, name: str, paused: bool,
                                  reason: str | None = None) -> None:
        """Pause or resume a schedule for every engine (see engine/schedules.set_paused)."""
        from dealertui.engine import schedules

        await schedules.set_paused(self.store, self.config, name, paused, by=self.who,
                                   reason=reason)

    async def skip(self, job_ids: Sequence[int], reason: str) -> ActionResult:
        """Release jobs without running them (their children may run); a reason is required."""
        if not reason or not reason.strip():
            raise UsageError("skip needs --reason: say why the job is not needed.")
        await self._check_jobs(job_ids)
        return await self.store.skip(job_ids, reason=reason.strip(), by=self.who)

    async def rerun(
        self, *, job_id: int | None = None, dealer_id: str | None = None,
        pipeline_id: int | None = None, reason: str | None = None,
    ) -> ActionResult:
        """Run a job again with all its descendants, or a whole pipeline: the dealer's newest,
        or the one named (a pipeline's id is the id of its first job)."""
        if job_id is not None:
            await self._check_jobs([job_id])
        if dealer_id is not None:
            await self.check_dealers([dealer_id])
        return await self.store.rerun(job_id=job_id, dealer_id=dealer_id,
                                      pipeline_id=pipeline_id, by=self.who, reason=reason)

    async def error_group(self, fingerprint: str) -> ErrorGroup:
        """The analyze-errors group with this fingerprint (UsageError when there is none)."""
        from dealertui.store.reads import error_groups

        for group in await error_groups(self.store, limit=10_000):
            if group["fingerprint"] == fingerprint.strip().lower():
                return group
        raise UsageError(
            f"no failure group has fingerprint {fingerprint!r}; see 'dealertui analyze-errors'."
        )

    async def retry_group(self, fingerprint: str, reason: str | None = None) -> ActionResult:
        """Retry every failed or blocked job of one failure group, across dealers."""
        group = await self.error_group(fingerprint)
        ids: list[int] = list(group["job_ids"])
        why = reason or f"failure group {fingerprint}: {group['signature']}"
        return await self.store.retry(job_ids=ids, by=self.who, reason=why)

    async def pause_group(self, fingerprint: str, reason: str | None = None) -> list[str]:
        """Pause every dealer of one failure group; returns the dealers paused."""
        group = await self.error_group(fingerprint)
        dealers: list[str] = list(group["all_dealer_ids"])
        why = reason or f"failure group {fingerprint}: {group['signature']}"
        for dealer_id in dealers:
            await self.store.set_paused(True, dealer_id=dealer_id, by=self.who, reason=why)
        return dealers

    def preview(self) -> Operator:
        """The same operator on a store whose writes roll back: for --dry-run and confirms."""
        return Operator(self.store.preview(), self.config, self.who)

    async def blast_radius(self, result: ActionResult) -> BlastRadius:
        """What an action (usually a preview) touches, by dealer and job type, with the
        states the jobs are in now."""
        ids = [*result.changed, *result.followers]
        jobs = await self.store.list_jobs(job_ids=ids) if ids else []
        followers = set(result.followers)
        groups: dict[tuple[str, str, str], int] = {}
        for j in jobs:
            key = (j.dealer_id, j.job_type, "follows" if j.id in followers else "changes")
            groups[key] = groups.get(key, 0) + 1
        return {
            "changes": len(result.changed),
            "follows": len(result.followers),
            "jobs": [{"id": j.id, "dealer_id": j.dealer_id, "job_type": j.job_type,
                      "state": j.state, "role": "follows" if j.id in followers else "changes"}
                     for j in jobs],
            "groups": [{"dealer_id": d, "job_type": t, "role": r, "count": n}
                       for (d, t, r), n in sorted(groups.items())],
        }

    async def reset_stuck(self, older_than_s: float | None = None) -> ActionResult:
        """Rescue running jobs whose lease expired, or that started more than older_than_s ago."""
        return await self.store.rescue_expired(
            older_than_s=older_than_s, worker_id=self.who, audit_by=self.who
        )
