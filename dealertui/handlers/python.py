"""`"package.module:function"` handlers, or the function itself (the embedding API,
dealertui/api.py): an async callable taking a JobContext."""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from typing import Any

from dealertui.handlers.base import Handler, JobContext, PermanentError


def load_callable(spec: str | Callable[..., Any]) -> Handler:
    """Import *spec* (a callable is taken as it is); raise PermanentError naming the spec
    when it cannot be used."""
    if callable(spec):
        return _as_handler(spec)
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
    return _as_handler(fn)


def _as_handler(fn: Callable[..., Any]) -> Handler:
    if inspect.iscoroutinefunction(fn):
        return fn

    async def call_sync_result(ctx: JobContext) -> Any:
        # A plain function may still return an awaitable (functools.partial of a coroutine).
        result = fn(ctx)
        return await result if inspect.isawaitable(result) else result

    return call_sync_result
