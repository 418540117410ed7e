"""The exec handler of benchmarks/chaos.py: logs every start and end of a run, sleeps, exits.

    chaos_handler.py LOG JOB_ID ATTEMPT DEALER JOB_TYPE SLEEP_S FAIL_RATE SEED

Appends ``start <job_id> <attempt> <pid> <ppid> <dealer> <job_type> <epoch>`` when it starts
and ``end <job_id> <attempt> <pid> <ppid> <exit> <epoch>`` just before it exits. Each line is
one write(2) to a file opened with O_APPEND, so lines of concurrent runs never interleave.
It sleeps SLEEP_S × 0.5..1.5 and exits 0, or 75 (transient) for a FAIL_RATE share of runs
drawn from (SEED, job id, attempt). A run killed by a signal writes no ``end`` line.
Standard library only and run with ``python -S``, so it starts fast.
"""

import os
import random
import sys
import time


def log(path: str, *fields: object) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (" ".join(str(f) for f in fields) + "\n").encode())
    finally:
        os.close(fd)


def main() -> int:
    path, job_id, attempt, dealer, job_type, sleep_s, fail_rate, seed = sys.argv[1:9]
    pid, ppid = os.getpid(), os.getppid()
    log(path, "start", job_id, attempt, pid, ppid, dealer, job_type, repr(time.time()))
    draw = random.Random(f"{seed}:{job_id}:{attempt}")
    time.sleep(float(sleep_s) * (0.5 + draw.random()))
    code = 75 if draw.random() < float(fail_rate) else 0
    log(path, "end", job_id, attempt, pid, ppid, code, repr(time.time()))
    return code


if __name__ == "__main__":
    sys.exit(main())
