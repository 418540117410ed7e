"""What runs a job type's jobs, as a config names it: "module:function", an exec table (a
subprocess, no shell) or a url table (a webhook); and its validation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from dealertui.config.validate import Table, show
from dealertui.masking import mask_url

HTTP_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class ExecHandler:
    """`{ exec = ["cmd", "{dealer_id}"], env = {K = "v"} }`: a subprocess, no shell."""

    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()


@dataclass(frozen=True)
class HttpHandler:
    """`{ url = "https://...", method = "POST", headers = {K = "v"} }`: a webhook."""

    url: str
    method: str = "POST"
    headers: tuple[tuple[str, str], ...] = ()


#: a callable (an async function of a JobContext) comes only from the embedding API, never a file
HandlerSpec = str | ExecHandler | HttpHandler | Callable[..., Any]

#: the `{name}` placeholders an exec handler's arguments may hold (handlers/exec.py fills them)
EXEC_PLACEHOLDERS = ("dealer_id", "job_type", "job_id", "attempt")
_PLACEHOLDER_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def parse_handler(job: Table) -> HandlerSpec:
    value = job.get(
        "handler", "a table" if isinstance(job.data.get("handler"), dict) else "a string"
    )
    if isinstance(value, str):
        module, _colon, func = value.partition(":")  # a second colon fails isidentifier()
        if not all(part.isidentifier() for part in [*module.split("."), *func.split(".")]):
            job.fail("handler", f'must look like "package.module:function", not {show(value)}')
        return value
    kind = "exec" if "exec" in value else "url" if "url" in value else None
    known: dict[str | None, tuple[str, ...]] = {
        "exec": ("exec", "env"), "url": ("url", "method", "headers")
    }
    table = Table(job.where, job.path("handler"), value, known.get(kind, ("exec", "url")))
    if kind is None:
        job.fail("handler", "needs 'exec' (a command) or 'url' (a webhook), not {}")
    if kind == "exec":
        argv = tuple(table.get("exec", "a list of strings"))
        if not argv or not argv[0]:
            table.fail("exec", f"must start with a command, not {show(list(argv))}")
        for arg in argv:
            # an unknown one would reach the command literally ("{dealr_id}")
            for name in _PLACEHOLDER_RE.findall(arg):
                if name not in EXEC_PLACEHOLDERS:
                    allowed = " ".join(f"{{{p}}}" for p in EXEC_PLACEHOLDERS)
                    table.fail("exec", f"has unknown placeholder {{{name}}} in {show(arg)} "
                                       f"(known: {allowed})")
        return ExecHandler(argv, tuple(table.get("env", "a table of strings", {}).items()))
    url, method = table.get("url", "a string"), table.get("method", "a string", "POST")
    if urlsplit(url).scheme.lower() not in ("http", "https") or not urlsplit(url).netloc:
        table.fail("url", f"must be an http:// or https:// URL, not {show(mask_url(url))}")
    if method.upper() not in HTTP_METHODS:
        table.fail("method", f"must be one of {', '.join(HTTP_METHODS)}, not {show(method)}")
    headers = tuple(table.get("headers", "a table of strings", {}).items())
    return HttpHandler(url, method.upper(), headers)
