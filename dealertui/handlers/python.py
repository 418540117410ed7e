"""`"package.module:function"` handlers: an async callable taking a JobContext."""

from __future__ import annotations

import importlib
import inspect
from typing import Any

from dealertui.handlers.base import Handler, JobContext, PermanentError


def load_callable(spec: str) -> Handler:
    """Import *spec*; raise PermanentError naming the spec when it cannot be used."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        raise PermanentError(
            f"handler {spec!r} cannot be imported: {type(exc).__name__}: {exc}"
        ) from None
    fn = getattr(module, attr, None)
    if fn is None or not callable(fn):
        raise PermanentError(f"handler {spec!r} not found: {module_name} has no callable {attr!r}")
    if inspect.iscoroutinefunction(fn):
        return fn  # type: ignore[no-any-return]

    async def call_sync_result(ctx: JobContext) -> Any:
        # A plain function may still return an awaitable (functools.partial of a coroutine).
        result = fn(ctx)
        return await result if inspect.isawaitable(result) else result

    return call_sync_result
