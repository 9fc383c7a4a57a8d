"""The Python side of the interoperability tests: a small aiohttp app on
aiohttp_session's own storages, with the conformance app's routes
(examples/CONFORMANCE.md) that the tests use.

Configured like the conformance app: SESSION_STORE (aiohttp-encrypted,
aiohttp-nacl, aiohttp-redis, aiohttp-memcached), SESSION_SECRET (base64 of
the 32 secret bytes), SESSION_MAX_AGE, SESSION_COOKIE_NAME, REDIS_URL,
MEMCACHED_URL (one HOST:PORT). Prints `listening on http://ADDR` once ready.

Time: FAKE_NOW (Unix seconds) and `POST /_clock {"now": N}` set the time
aiohttp_session and Fernet read, so the tests move both apps' clocks
together; the stores' own expiry (Redis, Memcached) runs on real time.
"""

import base64
import json
import os
import sys
import time

_real_time = time.time
_now = {"value": None}


def _clock():
    return _now["value"] if _now["value"] is not None else _real_time()


# Before aiohttp_session is imported: its memcached storage binds
# `from time import time` at import.
time.time = _clock
if os.environ.get("FAKE_NOW"):
    _now["value"] = float(os.environ["FAKE_NOW"])

import asyncio  # noqa: E402

from aiohttp import web  # noqa: E402
from aiohttp_session import get_session, session_middleware  # noqa: E402


def _storage():
    store = os.environ["SESSION_STORE"]
    secret = base64.b64decode(os.environ.get("SESSION_SECRET", ""), altchars=b"-_")
    max_age = os.environ.get("SESSION_MAX_AGE")
    params = {
        "cookie_name": os.environ.get("SESSION_COOKIE_NAME", "AIOHTTP_SESSION"),
        "max_age": int(max_age) if max_age else None,
    }
    if store == "aiohttp-encrypted":
        from aiohttp_session.cookie_storage import EncryptedCookieStorage

        return EncryptedCookieStorage(secret, **params)
    if store == "aiohttp-nacl":
        from aiohttp_session.nacl_storage import NaClCookieStorage

        return NaClCookieStorage(secret, **params)
    if store == "aiohttp-redis":
        from redis import asyncio as aioredis
        from aiohttp_session.redis_storage import RedisStorage

        return RedisStorage(aioredis.from_url(os.environ["REDIS_URL"]), **params)
    if store == "aiohttp-memcached":
        import aiomcache
        from aiohttp_session.memcached_storage import MemcachedStorage

        host, port = os.environ["MEMCACHED_URL"].rsplit(":", 1)
        return MemcachedStorage(aiomcache.Client(host, int(port)), **params)
    raise SystemExit(f"unknown SESSION_STORE {store!r}")


def _view(session):
    return web.json_response(
        {
            "new": session.new,
            "identity": session.identity,
            "created": session.created,
            "max_age": session.max_age,
            "empty": session.empty,
            "data": dict(session),
        }
    )


async def _object(request):
    try:
        body = json.loads(await request.read())
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "the body must be a JSON object"}),
            content_type="application/json",
        )
    return body


async def show(request):
    return _view(await get_session(request))


async def change(request):
    session = await get_session(request)
    for key, value in (await _object(request)).items():
        if value is None:
            session.pop(key, None)
        else:
            session[key] = value
    return _view(session)


async def invalidate(request):
    session = await get_session(request)
    session.invalidate()
    return _view(session)


async def increment(request):
    session = await get_session(request)
    key = request.query["key"]
    session[key] = session.get(key, 0) + 1
    return web.json_response({"value": session[key]})


async def set_clock(request):
    _now["value"] = float((await _object(request))["now"])
    return web.json_response({"now": _now["value"]})


async def main():
    app = web.Application(middlewares=[session_middleware(_storage())])
    app.router.add_get("/session", show)
    app.router.add_patch("/session", change)
    app.router.add_post("/session/invalidate", invalidate)
    app.router.add_post("/session/incr", increment)
    app.router.add_post("/_clock", set_clock)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = site._server.sockets[0].getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    # Ends when the test closes stdin (or kills the process).
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await runner.cleanup()


if __name__ == "__main__":
    asyncio.run(main())
