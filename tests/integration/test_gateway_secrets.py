"""Secrets rotated without a restart: the gateway's API keys file and JWT secret file in
a Kubernetes-style Secret volume, swapped under a running gateway (flowops/gateway/reload.py)."""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable
from pathlib import Path

import aiohttp
import jwt
import pytest
import yaml
from gateway_load import until
from gateway_servers import model_servers, publish_secret_volume, running_gateway

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
