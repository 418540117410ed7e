"""`{ url = "...", method = "POST" }` handlers: the job as JSON to a webhook (httpx).

2xx succeeds; 408, 425, 429, 5xx, connection errors and timeouts are transient; any other
status is permanent.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import httpx

from dealertui.config import HttpHandler
from dealertui.handlers.base import Handler, JobContext, PermanentError, TransientError
from dealertui.masking import mask_url

TRANSIENT_STATUSES = {408, 425, 429}


def shown_url(url: str) -> str:
    """*url* as error messages show it: password masked, query elided (webhook URLs carry
    tokens there), since job errors are stored, logged and shown in the console."""
    parts = urlsplit(mask_url(url))
    return urlunsplit(parts._replace(query="…" if parts.query else "", fragment=""))


def make_http_handler(spec: HttpHandler, client: httpx.AsyncClient) -> Handler:
    where = f"{spec.method} {shown_url(spec.url)}"

    async def run(ctx: JobContext) -> Any:
        body = {
            "job_id": ctx.job_id,
            "dealer_id": ctx.dealer_id,
            "job_type": ctx.job_type,
            "attempt": ctx.attempt,
            "payload": ctx.payload,
        }
        try:
            response = await client.request(
                spec.method, spec.url, json=body, headers=dict(spec.headers)
            )
        except httpx.TimeoutException:
            raise TransientError(f"{where} timed out") from None
        except httpx.TransportError as exc:
            raise TransientError(f"{where}: {type(exc).__name__}: {exc}") from None
        status = response.status_code
        if 200 <= status < 300:
            try:
                return response.json() if response.content else None
            except ValueError:
                return None
        text = f"HTTP {status} from {where}: {response.text[:200].strip()}"
        if status in TRANSIENT_STATUSES or status >= 500:
            raise TransientError(text)
        raise PermanentError(text)

    return run
