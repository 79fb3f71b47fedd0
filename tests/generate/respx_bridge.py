"""Route the SDKs' httpx2 traffic through a respx router.

anthropic 2.x and openai 3.x send requests with `httpx2` (a fork of httpx); respx patches
`httpx`. `RespxBridge` is an httpx2 transport that hands each request to a respx router
as an `httpx.Request` and returns its `httpx.Response` as an `httpx2.Response`, so the real
SDK code (serialisation, status errors, headers, parsing) runs against respx routes.
"""

from __future__ import annotations

import httpx
import httpx2
import respx


class RespxBridge(httpx2.AsyncBaseTransport):
    def __init__(self, router: respx.Router):
        self.router = router

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        body = await request.aread()
        mirrored = httpx.Request(
            request.method, str(request.url), headers=list(request.headers.multi_items()), content=body
        )
        response = await self.router.async_handler(mirrored)
        content = await response.aread()
        return httpx2.Response(
            response.status_code,
            headers=list(response.headers.multi_items()),
            content=content,
            request=request,
        )


def client_factory(router: respx.Router):
    """An `http_client_factory` for `open_teacher`: a fresh httpx2 client over the router."""
    return lambda: httpx2.AsyncClient(transport=RespxBridge(router))
