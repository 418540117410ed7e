"""The verdict of one chaos scenario: the handler's log of runs against the database's record.

Inputs: every handler run (pid, parent pid = the worker, job, attempt, start, end and exit code
from chaos_handler.py's log; for a run killed without an ``end`` line, the last time the
script saw the process alive), the final jobs, their ``job_events`` and ``job_deps``, the
``workers`` table (worker id -> pid) and the faults the script injected. See chaos.py's
docstring for what each metric means; ``analyse`` returns them all.

Claims and windows: every claim writes a ``ready -> running`` event. A run belongs to the latest
claim of its job, made by its own worker (pid), at or before the run's start. The claim's
window ends at the job's next event (by event id: a job's transitions are serialised by its
row lock, their ids are in order; their times are taken before each transaction and may not be).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

INF = float("inf")
SLACK = 0.01  # event times vs handler times: same clock, float rounding only


@dataclass
class Run:
    pid: int
    ppid: int
    job_id: int
    attempt: int
    dealer: str
    job_type: str
    start: float
    end: float | None = None  # from the handler's end line; None: it was killed
    exit: int | None = None
    seen_alive: float = 0.0  # the last time the script saw the process alive
    claim: int | None = None  # index into the job's events of the claim this run belongs to
    claim_end: float = INF  # `at` of the job's next event after that claim

    @property
    def end_low(self) -> float:
        """When it ended, or a time it was surely still running at if it was killed."""
        return self.end if self.end is not None else max(self.start, self.seen_alive)


@dataclass
class Fault:
    kind: str
    t0: float
    t1: float
    worker_pid: int | None = None  # None: every worker (a database fault)
    job_id: int | None = None  # an operator command on one job


@dataclass
class Facts:
    runs: list[Run]
    jobs: list[dict[str, Any]]
    events: list[dict[str, Any]]
    deps: list[tuple[int, int]]  # (child, parent)
    workers: dict[str, int]  # worker id -> pid
    faults: list[Fault]
    limit: int  # max_concurrent_jobs_per_dealer
    allowance_s: float  # how long a run may outlive its claim (stops within a heartbeat)
    notes: dict[str, Any] = field(default_factory=dict)


def analyse(f: Facts) -> dict[str, Any]:
    by_job: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for e in sorted(f.events, key=lambda e: e["id"]):
        by_job[e["job_id"]].append(e)
    runs_of: dict[int, list[Run]] = defaultdict(list)
    unclaimed = 0
    for r in sorted(f.runs, key=lambda r: r.start):
        runs_of[r.job_id].append(r)
        if not _attach_claim(r, by_job[r.job_id], f.workers):
            unclaimed += 1

    recorded, stale = _successes(by_job, runs_of, f.workers)
    stale_jobs = sorted({j for j, _ in stale})
    succeeded_twice = {j for j, evs in by_job.items()
                       if sum(e["to_state"] == "succeeded" for e in evs) > 1}
    succeeded_twice |= {j for j, rs in runs_of.items() if sum(id(r) in recorded for r in rs) > 1}

    overlapping, brief, overlap_jobs = _overlaps(runs_of, f.allowance_s)
    before_fault, other = _unrecorded_exit0(f, recorded)
    max_clipped, max_raw = _max_running(f.runs)
    return {
        "jobs": len(f.jobs),
        "faults": len(f.faults),
        "runs": len(f.runs),
        "lost": _lost(f),
        "succeeded_twice": len(succeeded_twice),
        "stale_success": len(stale),
        "overlapping": overlapping,
        "dep_violations": _dep_violations(f, by_job, runs_of),
        "max_running": max_clipped,
        "limit": f.limit,
        "exit0_before_fault": before_fault,
        "exit0_unrecorded_other": other,
        "overlap_within_allowance": brief,
        "max_running_raw": max_raw,
        "unclaimed_runs": unclaimed,
        "final_states": _count(j["state"] for j in f.jobs),
        "examples": {"succeeded_twice": sorted(succeeded_twice)[:10],
                     "stale_success": stale_jobs[:10], "overlapping": overlap_jobs[:10]},
        **f.notes,
    }


def _attach_claim(r: Run, evs: list[dict[str, Any]], workers: dict[str, int]) -> bool:
    best = None
    for i, e in enumerate(evs):
        if e["to_state"] != "running" or e["at"] > r.start + SLACK:
            continue
        if workers.get(e["worker"] or "") == r.ppid:
            best = i
    if best is None:
        return False
    r.claim = best
    r.claim_end = evs[best + 1]["at"] if best + 1 < len(evs) else INF
    return True


def _successes(by_job: dict[int, list[dict[str, Any]]], runs_of: dict[int, list[Run]],
               workers: dict[str, int]) -> tuple[set[int], list[tuple[int, int]]]:
    """The runs whose success was recorded (by id()), and the recorded successes no run backs:
    none of the recording worker's runs of the claim before it ended 0 before it."""
    recorded: set[int] = set()
    stale: list[tuple[int, int]] = []  # (job id, event id)
    for job_id, evs in by_job.items():
        for i, e in enumerate(evs):
            if e["to_state"] != "succeeded":
                continue
            claim = max((k for k in range(i) if evs[k]["to_state"] == "running"), default=None)
            pid = workers.get(e["worker"] or "")
            backing = [r for r in runs_of.get(job_id, ())
                       if r.claim == claim and r.exit == 0 and r.ppid == pid
                       and r.end is not None and r.end <= e["at"] + SLACK
                       and id(r) not in recorded]
            if backing:
                recorded.add(id(backing[-1]))
            else:
                stale.append((job_id, e["id"]))
    return recorded, stale


def _overlaps(runs_of: dict[int, list[Run]], allowance: float) -> tuple[int, int, list[int]]:
    """Pairs of runs of one job alive at once: (beyond the allowance, within it, the jobs of
    the first kind)."""
    bad = brief = 0
    jobs: set[int] = set()
    for rs in runs_of.values():
        for i, a in enumerate(rs):
            for b in rs[i + 1:]:
                if not b.start < a.end_low:
                    continue
                if b.start < a.claim_end or a.end_low > a.claim_end + allowance:
                    bad += 1
                    jobs.add(a.job_id)
                else:
                    brief += 1
    return bad, brief, sorted(jobs)


def _unrecorded_exit0(f: Facts, recorded: set[int]) -> tuple[int, int]:
    """Runs that ended 0 without their success recorded: (a fault hit their worker or job
    between their end and the end of their claim, the rest)."""
    excused = other = 0
    for r in f.runs:
        if r.exit != 0 or id(r) in recorded or r.end is None:
            continue
        hit = any(
            flt.t0 <= r.claim_end + SLACK and flt.t1 >= r.end - SLACK
            and flt.worker_pid in (None, r.ppid) and flt.job_id in (None, r.job_id)
            for flt in f.faults
        )
        if hit:
            excused += 1
        else:
            other += 1
    return excused, other


def _max_running(runs: list[Run]) -> tuple[int, int]:
    """Most runs of one dealer alive at once: each clipped to its claim, and raw."""
    def sweep(clip: bool) -> int:
        points: dict[str, list[tuple[float, int]]] = defaultdict(list)
        for r in runs:
            end = min(r.end_low, r.claim_end) if clip else r.end_low
            if end > r.start:
                points[r.dealer] += [(r.start, 1), (end, -1)]
        best = 0
        for pts in points.values():
            n = 0
            for _, step in sorted(pts):  # an end sorts before a start at the same time
                n += step
                best = max(best, n)
        return best
    return sweep(True), sweep(False)


def _dep_violations(f: Facts, by_job: dict[int, list[dict[str, Any]]],
                    runs_of: dict[int, list[Run]]) -> int:
    """Runs of a child that started before every parent had a run that ended 0 and a recorded
    success, both before that start."""
    parents: dict[int, list[int]] = defaultdict(list)
    for child, parent in f.deps:
        parents[child].append(parent)
    first_ok: dict[int, float] = {}
    first_end0: dict[int, float] = {}
    for j, evs in by_job.items():
        ats = [e["at"] for e in evs if e["to_state"] == "succeeded"]
        if ats:
            first_ok[j] = min(ats)
    for j, rs in runs_of.items():
        ends = sorted(r.end for r in rs if r.exit == 0 and r.end is not None)
        if ends:
            first_end0[j] = ends[0]
    bad = 0
    for child, ps in parents.items():
        for r in runs_of.get(child, ()):
            if any(first_ok.get(p, INF) > r.start + SLACK or first_end0.get(p, INF) > r.start
                   for p in ps):
                bad += 1
    return bad


def _lost(f: Facts) -> int:
    """Jobs that did not end succeeded (the operator scenario retries its cancelled jobs at
    the end, so every scenario expects every job to succeed)."""
    return sum(j["state"] != "succeeded" for j in f.jobs)


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = defaultdict(int)
    for x in items:
        out[x] += 1
    return dict(out)

