"""Secrets rotated without a restart: the gateway's API keys file and JWT secret file in
a Kubernetes-style Secret volume, swapped under a running gateway (flowops/gateway/reload.py);
an issuer's JWKS URL rotating its keys (fetched again for an unknown kid, and at an interval)."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
import yaml
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric import rsa
from gateway_servers import model_servers, running_gateway
from helpers import until
from jwt.algorithms import RSAAlgorithm
from volumes import publish_secret_volume

from flowops.broker import free_port
from flowops.gateway.auth import hash_api_key

pytestmark = [pytest.mark.integration, pytest.mark.asyncio]

OLD_KEY, NEW_KEY = "old-key-0123456789abcdef", "new-key-0123456789abcdef"
OLD_SECRET, NEW_SECRET = "old-secret-" + "x" * 32, "new-secret-" + "y" * 32


def secrets(key: str, secret: str) -> dict[str, str]:
    keys = [{"name": "ci", "sha256": hash_api_key(key)}]
    return {"api-keys.yaml": yaml.safe_dump(keys), "jwt-secret": secret}


def token(secret: str) -> str:
    return jwt.encode({"sub": "alice", "exp": int(time.time()) + 600}, secret, algorithm="HS256")


async def test_keys_and_secrets_rotate_under_a_running_gateway(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    volume = tmp_path / "secret"
    publish_secret_volume(volume, secrets(OLD_KEY, OLD_SECRET), 1)
    async with model_servers(1) as servers:
        gateway = {
            "routes": [{"name": "m", "prefix": "/m", "upstreams": [servers[0].url], "auth": True}],
            "auth": {
                "api_keys_file": str(volume / "api-keys.yaml"),
                "jwt": {"secret_file": str(volume / "jwt-secret")},
            },
            "reload": {"interval": 0.05},
            "publish": {"enabled": False},
        }
        async with running_gateway(gateway) as base, aiohttp.ClientSession() as session:

            async def status(headers: dict[str, str]) -> int:
                async with session.get(f"{base}/m/x", headers=headers) as response:
                    return response.status

            def key(value: str) -> dict[str, str]:
                return {"X-API-Key": value}

            def bearer(secret: str) -> dict[str, str]:
                return {"Authorization": f"Bearer {token(secret)}"}

            assert await status(key(OLD_KEY)) == 200
            assert await status(bearer(OLD_SECRET)) == 200
            publish_secret_volume(volume, secrets(NEW_KEY, NEW_SECRET), 2)
            await until(lambda: _is(status(key(NEW_KEY)), 200), "the new key is accepted")
            await until(lambda: _is(status(bearer(NEW_SECRET)), 200), "the new secret")
            assert await status(key(OLD_KEY)) == 401
            assert await status(bearer(OLD_SECRET)) == 401
            with caplog.at_level(logging.WARNING, logger="flowops.gateway"):
                publish_secret_volume(
                    volume,
                    {"api-keys.yaml": "- {name: x, sha256: nope}", "jwt-secret": NEW_SECRET},
                    3,
                )
                await until(lambda: _warned(caplog), "the bad file is reported")
            # the bad file changed nothing: the keys of the last good one still work
            assert await status(key(NEW_KEY)) == 200
            assert await status(bearer(NEW_SECRET)) == 200
    warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "api-keys.yaml" in warnings[0]
    assert "kept the previous ones" in warnings[0]


async def _is(status: Awaitable[int], wanted: int) -> bool:
    return await status == wanted


def _warned(caplog: pytest.LogCaptureFixture) -> bool:
    return any("kept the previous ones" in r.getMessage() for r in caplog.records)


@asynccontextmanager
async def jwks_issuer(document: dict[str, Any]) -> AsyncIterator[str]:
    """An issuer's JWKS URL on a real aiohttp server, answering ``document`` as it is
    at each request (the test changes it)."""

    async def jwks(request: web.Request) -> web.Response:
        return web.json_response(document)

    app = web.Application()
    app.router.add_get("/jwks.json", jwks)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    try:
        await web.TCPSite(runner, "127.0.0.1", port).start()
        yield f"http://127.0.0.1:{port}/jwks.json"
    finally:
        await runner.cleanup()


def public_jwk(key: rsa.RSAPrivateKey, kid: str) -> dict[str, Any]:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), "kid": kid, "alg": "RS256"}


def rs_token(key: rsa.RSAPrivateKey, kid: str) -> str:
    claims = {"sub": "alice", "exp": int(time.time()) + 600}
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": kid})


@asynccontextmanager
async def jwt_gateway(
    url: str, **jwt_settings: Any
) -> AsyncIterator[Callable[[str], Awaitable[int]]]:
    """A gateway whose route requires a token verified by the JWKS at ``url``; yields
    what a GET with a token gets."""
    async with model_servers(1) as servers:
        gateway = {
            "routes": [{"name": "m", "prefix": "/m", "upstreams": [servers[0].url], "auth": True}],
            "auth": {"jwt": {"jwks_url": url, **jwt_settings}},
            "publish": {"enabled": False},
        }
        async with running_gateway(gateway) as base, aiohttp.ClientSession() as session:

            async def status(token: str) -> int:
                headers = {"Authorization": f"Bearer {token}"}
                async with session.get(f"{base}/m/x", headers=headers) as response:
                    return response.status

            yield status


async def test_a_token_with_a_new_kid_fetches_the_jwks_at_once() -> None:
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "on")
    document = {"keys": [public_jwk(old, "old")]}
    async with (
        jwks_issuer(document) as url,
        jwt_gateway(url, jwks_refresh=3600, jwks_min_interval=0) as status,
    ):
        before = await status(rs_token(old, "old"))
        made_up = await status(rs_token(new, "new"))  # not published yet: 401
        document["keys"] = [public_jwk(old, "old"), public_jwk(new, "new")]
        rotated = await status(rs_token(new, "new"))  # its kid unknown: fetched at once
    assert (before, made_up, rotated) == (200, 401, 200)


async def test_a_withdrawn_key_is_refused_after_the_interval_s_fetch() -> None:
    old, new = (rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in "on")
    document = {"keys": [public_jwk(old, "old"), public_jwk(new, "new")]}
    async with (
        jwks_issuer(document) as url,
        jwt_gateway(url, jwks_refresh=0.2, jwks_min_interval=3600) as status,
    ):
        before = await status(rs_token(old, "old"))
        document["keys"] = [public_jwk(new, "new")]
        await until(lambda: _is(status(rs_token(old, "old")), 401), "the old key's end")
        still = await status(rs_token(new, "new"))
    assert (before, still) == (200, 200)
