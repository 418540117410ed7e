"""How a job is run: python callable, exec command, http webhook, demo."""

from __future__ import annotations

import httpx

from dealertui.config import ExecHandler, HttpHandler, JobTypeConfig
from dealertui.handlers.base import (
    Handler,
    JobContext,
    PermanentError,
    TransientError,
    payload_of,
)
from dealertui.handlers.exec import make_exec_handler
from dealertui.handlers.http import make_http_handler
from dealertui.handlers.python import load_callable


class HandlerRegistry:
    """Resolves each job type's handler once; an unusable spec fails its jobs permanently."""

    def __init__(self, job_types: dict[str, JobTypeConfig] | None = None) -> None:
        self._job_types = dict(job_types or {})
        self._cache: dict[str, Handler] = {}
        self._client: httpx.AsyncClient | None = None

    def get(self, job_type: str) -> Handler:
        handler = self._cache.get(job_type)
        if handler is None:
            handler = self._cache[job_type] = self._build(job_type)
        return handler

    def _build(self, job_type: str) -> Handler:
        jt = self._job_types.get(job_type)
        if jt is None:
            return _failing(f"job type {job_type!r} is not in the config")
        spec = jt.handler
        if spec is None:  # refused before the run by check_runnable; never simulated
            return _failing(f"job type {job_type!r} has no handler in the config")
        if isinstance(spec, ExecHandler):
            return make_exec_handler(spec, jt.retry_exit_codes)
        if isinstance(spec, HttpHandler):
            if self._client is None:
                # the per-type timeout is enforced by the engine; this only bounds connects
                self._client = httpx.AsyncClient(timeout=httpx.Timeout(None, connect=10.0))
            return make_http_handler(spec, self._client)
        try:
            return load_callable(spec)
        except PermanentError as exc:
            return _failing(str(exc))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None


def _failing(message: str) -> Handler:
    async def fail(ctx: JobContext) -> None:
        raise PermanentError(message)

    return fail


__all__ = ["Handler", "HandlerRegistry", "JobContext", "PermanentError", "TransientError",
           "payload_of"]
