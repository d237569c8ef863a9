"""The anchor of bench/gateway.py: a plain aiohttp reverse proxy, as a user writes one.

One shared ClientSession with its defaults, the body read whole, the answer read whole;
nothing else (no auth, limits, metrics, retries or publishing).

    python bench/plain_proxy.py PORT UPSTREAM_URL [--uvloop]
"""

import sys

import aiohttp
from aiohttp import web

DROPPED = {"host", "content-length", "transfer-encoding", "connection"}


async def start(app: web.Application) -> None:
    app["session"] = aiohttp.ClientSession()


async def stop(app: web.Application) -> None:
    await app["session"].close()


async def proxy(request: web.Request) -> web.Response:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in DROPPED}
    async with request.app["session"].request(
        request.method, UPSTREAM + request.path_qs, headers=headers, data=await request.read()
    ) as upstream:
        body = await upstream.read()
        kept = {k: v for k, v in upstream.headers.items() if k.lower() not in DROPPED}
        return web.Response(body=body, status=upstream.status, headers=kept)


if __name__ == "__main__":
    PORT, UPSTREAM = int(sys.argv[1]), sys.argv[2]
    app = web.Application()
    app.on_startup.append(start)
    app.on_cleanup.append(stop)
    app.router.add_route("*", "/{tail:.*}", proxy)
    loop = None
    if "--uvloop" in sys.argv:
        import uvloop

        loop = uvloop.new_event_loop()
    web.run_app(app, host="127.0.0.1", port=PORT, access_log=None, print=None, loop=loop)
