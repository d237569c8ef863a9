"""flowops.gateway.bearer: JWT keys (secret, PEM, JWKS file, JWKS over HTTP) and checks.

The JWKS-over-HTTP cases run a real aiohttp server on 127.0.0.1 in the test's own event
loop: no service outside the process, so they live with the unit tests. Time is a fixed
clock; the leeway boundaries are exact.
"""

from __future__ import annotations

import asyncio
import datetime
import hashlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
import pytest_asyncio
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from jwt.algorithms import RSAAlgorithm
from pydantic import ValidationError

from flowops.broker import free_port
from flowops.errors import ConfigError, ServiceError
from flowops.gateway import bearer
from flowops.gateway.bearer import JwtSettings, TokenError, TokenVerifier, VerifiedToken

NOW = 1_800_000_000.0
SECRET = "hs-secret-for-the-bearer-tests-0123456789-abcdefghijklmnopqrstuv"  # 64 bytes


@pytest.fixture(scope="module")
def key_a() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def key_b() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def jwk(key: rsa.RSAPrivateKey, **fields: Any) -> dict[str, Any]:
    return {**json.loads(RSAAlgorithm.to_jwk(key.public_key())), **fields}


def load(
    settings: Mapping[str, Any], environ: Mapping[str, str] | None = None, now: float = NOW
) -> TokenVerifier:
    parsed = JwtSettings.model_validate(settings)
    return asyncio.run(TokenVerifier.load(parsed, environ=environ or {}, clock=lambda: now))


def token(key: Any, algorithm: str = "HS256", kid: str | None = None, **claims: Any) -> str:
    payload = {"sub": "alice", "exp": int(NOW) + 600, **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    headers = {"kid": kid} if kid is not None else None
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def rejected(verifier: TokenVerifier, raw: str) -> TokenError:
    with pytest.raises(TokenError) as caught:
        verifier.verify(raw)
    return caught.value


@pytest.fixture
def two_key_jwks(tmp_path: Path, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey) -> Path:
    path = tmp_path / "jwks.json"
    keys = [jwk(key_a, kid="a", use="sig"), jwk(key_b, kid="b", alg="RS512")]
    path.write_text(json.dumps({"keys": keys}))
    return path


# -- settings -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "algorithms"),
    [
        ({"secret_env": "S"}, ["HS256"]),
        ({"jwks_file": "j.json"}, ["RS256"]),
        ({"secret_file": "s", "public_key_file": "p.pem"}, ["HS256", "RS256"]),
        ({"secret_env": "S", "algorithms": ["HS512", "HS384"]}, ["HS512", "HS384"]),
    ],
)
def test_algorithms_default_to_the_keys_configured(
    settings: dict[str, Any], algorithms: list[str]
) -> None:
    assert JwtSettings.model_validate(settings).algorithms == algorithms


def test_one_audience_may_be_written_as_a_string() -> None:
    assert JwtSettings(secret_env="S", audience="api").audience == ["api"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (
            {"algorithms": ["RS256"], "secret_env": "S"},
            "secret_env is set but algorithms lists no HS",
        ),
        ({"algorithms": ["HS256"], "jwks_url": "https://i.test/j"}, "HS* algorithms need secret_"),
        (
            {"algorithms": ["HS256", "RS256"], "secret_env": "S"},
            "RS* algorithms need public_key_file, jwks_file or jwks_url",
        ),
        ({"algorithms": ["HS256"], "secret_env": "S", "jwks_file": "j"}, "jwks_file is set but"),
        ({"secret_file": "s", "secret_env": "S"}, "set only one of secret_env, secret_file"),
        ({"leeway": 1}, "set a secret (secret_env or secret_file) or a public key"),
    ],
)
def test_a_bad_settings_message_names_the_fields(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        JwtSettings.model_validate(settings)
    assert message in caught.value.errors()[0]["msg"]


# -- time: exp, nbf, iat against the clock, with leeway ------------------------------------


@pytest.mark.parametrize(
    ("claims", "now", "code"),
    [
        ({"exp": int(NOW)}, NOW + 29.999, None),
        ({"exp": int(NOW)}, NOW + 30, "expired"),
        ({"exp": NOW + 0.5}, NOW + 30.4, None),
        ({"nbf": int(NOW) + 30}, NOW, None),
        ({"nbf": int(NOW) + 31}, NOW, "not_yet_valid"),
        ({"iat": int(NOW) + 30}, NOW, None),
        ({"iat": int(NOW) + 31}, NOW, "not_yet_valid"),
        ({"exp": True}, NOW, "invalid_token"),
        ({"nbf": "soon"}, NOW, "invalid_token"),
    ],
)
def test_times_are_checked_against_the_clock_with_leeway(
    claims: dict[str, Any], now: float, code: str | None
) -> None:
    verifier = load({"secret_env": "S", "leeway": 30}, {"S": SECRET}, now=now)
    raw = token(SECRET, **claims)
    if code is None:
        assert verifier.verify(raw).subject == "alice"
    else:
        assert rejected(verifier, raw).code == code


def test_exp_may_be_optional() -> None:
    verifier = load({"secret_env": "S", "require_exp": False}, {"S": SECRET})
    assert verifier.verify(token(SECRET, exp=None)).subject == "alice"
    strict = load({"secret_env": "S"}, {"S": SECRET})
    failure = rejected(strict, token(SECRET, exp=None))
    assert (failure.code, failure.reason) == ("missing_claim", "token lacks the 'exp' claim")


def test_a_remembered_token_is_still_checked_against_the_clock() -> None:
    clock = [NOW]
    settings = JwtSettings(secret_env="S", leeway=0)
    verifier = asyncio.run(
        TokenVerifier.load(settings, environ={"S": SECRET}, clock=lambda: clock[0])
    )
    raw = token(SECRET, exp=int(NOW) + 60, nbf=int(NOW) - 10)
    assert verifier.verify(raw).subject == "alice"
    clock[0] = NOW - 11
    assert rejected(verifier, raw).code == "not_yet_valid"
    clock[0] = NOW + 60
    assert rejected(verifier, raw).code == "expired"


def test_remembered_tokens_are_bounded_oldest_out(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bearer, "_CACHE_SIZE", 2)
    verifier = load({"secret_env": "S"}, {"S": SECRET})
    first, second, third = (token(SECRET, jti=str(n)) for n in range(3))
    for raw in (first, second, third, third):
        verifier.verify(raw)
    digests = [hashlib.sha256(raw.encode()).digest() for raw in (second, third)]
    assert list(verifier._verified) == digests


def test_a_token_that_failed_is_not_remembered() -> None:
    verifier = load({"secret_env": "S"}, {"S": SECRET})
    raw = token(SECRET, sub="")
    for _ in range(2):
        assert rejected(verifier, raw).code == "missing_claim"
    assert verifier._verified == {}


# -- keys ------------------------------------------------------------------------------------


@pytest.mark.parametrize("algorithm", ["HS256", "HS384", "HS512"])
def test_each_hmac_algorithm_verifies_with_the_secret(algorithm: str) -> None:
    verifier = load({"secret_env": "S", "algorithms": [algorithm]}, {"S": SECRET})
    assert verifier.verify(token(SECRET, algorithm)) == VerifiedToken("alice", None, None)


@pytest.mark.parametrize("algorithm", ["RS256", "RS384", "RS512"])
def test_each_rsa_algorithm_verifies_with_a_pem_key(
    tmp_path: Path, key_a: rsa.RSAPrivateKey, algorithm: str
) -> None:
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        key_a.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    verifier = load({"public_key_file": str(pem), "algorithms": [algorithm]})
    # a PEM key has no kid: it verifies tokens that name one too
    assert verifier.verify(token(key_a, algorithm, kid="anything")).subject == "alice"


def test_a_secret_file_loses_its_final_newline(tmp_path: Path) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text(SECRET + "\n")
    assert load({"secret_file": str(secret_file)}).verify(token(SECRET)).subject == "alice"


def test_a_certificate_gives_its_public_key(tmp_path: Path, key_a: rsa.RSAPrivateKey) -> None:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer.test")])
    start = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key_a.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=365))
        .sign(key_a, hashes.SHA256())
    )
    pem = tmp_path / "cert.pem"
    pem.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    assert load({"public_key_file": str(pem)}).verify(token(key_a, "RS256")).subject == "alice"


def test_the_kid_picks_the_jwks_key(
    two_key_jwks: Path, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    verifier = load({"jwks_file": str(two_key_jwks), "algorithms": ["RS256", "RS512"]})
    assert verifier.verify(token(key_a, "RS256", kid="a")).subject == "alice"
    assert verifier.verify(token(key_b, "RS512", kid="b")).subject == "alice"
    assert rejected(verifier, token(key_a, "RS256", kid="b")).code == "bad_algorithm"
    assert rejected(verifier, token(key_b, "RS256", kid="a")).code == "invalid_signature"
    assert rejected(verifier, token(key_a, "RS256", kid="c")).code == "unknown_kid"
    failure = rejected(verifier, token(key_a, "RS256"))
    assert (failure.code, failure.reason) == ("unknown_kid", "token names no key id")
    assert repr(verifier) == "<TokenVerifier RS256/RS512, key ids ['a', 'b']>"


def test_a_jwks_of_one_key_verifies_tokens_without_a_kid(
    tmp_path: Path, key_a: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [jwk(key_a, kid="only")]}))
    verifier = load({"jwks_file": str(path)})
    assert verifier.verify(token(key_a, "RS256")).subject == "alice"
    assert rejected(verifier, token(key_a, "RS256", kid="other")).code == "unknown_kid"


def test_keys_not_for_rs_signatures_are_skipped(
    tmp_path: Path, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    ec_key = json.loads(
        jwt.algorithms.ECAlgorithm.to_jwk(ec.generate_private_key(ec.SECP256R1()).public_key())
    )
    keys = [
        {**ec_key, "kid": "ec"},
        jwk(key_b, kid="enc", use="enc"),
        jwk(key_b, kid="ps", alg="PS256"),
        jwk(key_a, kid="sig"),
    ]
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": keys}))
    verifier = load({"jwks_file": str(path)})
    assert verifier.verify(token(key_a, "RS256", kid="sig")).subject == "alice"
    assert rejected(verifier, token(key_b, "RS256", kid="enc")).code == "unknown_kid"


@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("not json", "not JSON"),
        ({"keys": {}}, "not a JWKS document"),
        ([{"kty": "RSA"}], "not a JWKS document"),
        ({"keys": ["x"]}, "keys[0]: not a JSON object"),
        ({"keys": []}, "no RSA signing key for RS256"),
        ({"keys": [{"kty": "RSA", "n": "AQAB"}]}, "keys[0]: not a valid RSA key"),
    ],
)
def test_unusable_jwks_files_are_config_errors(tmp_path: Path, document: Any, reason: str) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(document if isinstance(document, str) else json.dumps(document))
    with pytest.raises(ConfigError) as caught:
        load({"jwks_file": str(path)})
    assert caught.value.key == "gateway.auth.jwt.jwks_file"
    assert reason in caught.value.reason


def test_a_jwks_publishing_a_private_key_or_a_kid_twice_is_refused(
    tmp_path: Path, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [json.loads(RSAAlgorithm.to_jwk(key_a))]}))
    with pytest.raises(ConfigError, match="a private key; a JWKS publishes public keys only"):
        load({"jwks_file": str(path)})
    path.write_text(json.dumps({"keys": [jwk(key_a, kid="k"), jwk(key_b, kid="k")]}))
    with pytest.raises(ConfigError, match="key id 'k' appears twice"):
        load({"jwks_file": str(path)})


def test_weak_or_wrong_pem_keys_are_refused(tmp_path: Path, key_a: rsa.RSAPrivateKey) -> None:
    pem = tmp_path / "key.pem"
    private = key_a.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    ec_public = ec.generate_private_key(ec.SECP256R1()).public_key()
    for content, reason in [
        (private, "not a PEM public key or certificate"),
        (b"hello", "not a PEM public key or certificate"),
        (_pem(small), "an RSA key of 1024 bits; at least 2048"),
        (_pem(ec_public), "not an RSA public key"),
    ]:
        pem.write_bytes(content)
        with pytest.raises(ConfigError) as caught:
            load({"public_key_file": str(pem)})
        assert caught.value.key == "gateway.auth.jwt.public_key_file"
        assert reason in caught.value.reason


def _pem(public: Any) -> bytes:
    return bytes(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def test_a_pem_key_is_not_an_hmac_secret(key_a: rsa.RSAPrivateKey) -> None:
    with pytest.raises(ConfigError, match="looks like a PEM key"):
        load({"secret_env": "S"}, {"S": _pem(key_a.public_key()).decode()})


# -- claims ----------------------------------------------------------------------------------


def test_identity_routes_and_models_claims_are_configurable() -> None:
    settings = {
        "secret_env": "S",
        "identity_claim": "email",
        "routes_claim": "scope",
        "models_claim": None,
        "subjects": {"a@x.test": {"routes": ["iris", "wine"], "models": ["m1"]}},
    }
    verifier = load(settings, {"S": SECRET})
    raw = token(SECRET, email="a@x.test", scope="iris beer", flowops_models=["m2"])
    assert verifier.verify(raw) == VerifiedToken("a@x.test", frozenset({"iris"}), frozenset({"m1"}))


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"flowops_routes": {"iris": True}}, "invalid_token"),
        ({"flowops_models": ["m1", 2]}, "invalid_token"),
        ({"sub": ""}, "missing_claim"),
        ({"sub": 42}, "invalid_token"),
        ({"sub": "alice\nbob"}, "missing_claim"),
        ({"sub": "a" * 257}, "missing_claim"),
    ],
)
def test_unusable_claims_are_refused(claims: dict[str, Any], code: str) -> None:
    verifier = load({"secret_env": "S"}, {"S": SECRET})
    assert rejected(verifier, token(SECRET, **claims)).code == code


def test_a_token_with_an_audience_needs_one_configured() -> None:
    verifier = load({"secret_env": "S"}, {"S": SECRET})
    assert rejected(verifier, token(SECRET, aud="anyone")).code == "wrong_audience"
    listed = load({"secret_env": "S", "audience": ["a", "b"]}, {"S": SECRET})
    assert listed.verify(token(SECRET, aud=["c", "b"])).subject == "alice"


# -- a JWKS fetched over HTTP at start-up ----------------------------------------------------


class JwksServer:
    """A real aiohttp server on 127.0.0.1 answering GET /jwks.json with ``document``."""

    def __init__(self) -> None:
        self.document: Any = {"keys": []}
        self.status = 200
        self.requests = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/jwks.json"

    async def handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        body = self.document if isinstance(self.document, str) else json.dumps(self.document)
        return web.Response(text=body, status=self.status, content_type="application/json")


@pytest_asyncio.fixture
async def jwks_server() -> AsyncIterator[JwksServer]:
    server = JwksServer()
    app = web.Application()
    app.router.add_get("/jwks.json", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", server.port).start()
    try:
        yield server
    finally:
        await runner.cleanup()


async def load_url(url: str) -> TokenVerifier:
    settings = JwtSettings(jwks_url=url)
    return await TokenVerifier.load(settings, environ={}, clock=lambda: NOW)


@pytest.mark.asyncio
async def test_a_jwks_url_is_fetched_at_start_up_and_verify_does_no_io(
    jwks_server: JwksServer, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    jwks_server.document = {"keys": [jwk(key_a, kid="a"), jwk(key_b, kid="b")]}
    verifier = await load_url(jwks_server.url)
    assert verifier.verify(token(key_b, "RS256", kid="b")).subject == "alice"
    assert rejected(verifier, token(key_a, "RS256", kid="z")).code == "unknown_kid"
    assert jwks_server.requests == 1


@pytest.mark.asyncio
async def test_a_jwks_url_answering_an_error_is_a_service_error(
    jwks_server: JwksServer,
) -> None:
    jwks_server.status = 503
    with pytest.raises(ServiceError) as caught:
        await load_url(jwks_server.url)
    assert str(caught.value) == f"{jwks_server.url}: the JWKS request answered HTTP 503"


@pytest.mark.asyncio
async def test_a_jwks_url_with_nothing_listening_is_a_service_error_without_the_password() -> None:
    port = free_port()
    with pytest.raises(ServiceError) as caught:
        await load_url(f"http://reader:hunter2-password@127.0.0.1:{port}/jwks.json")
    assert caught.value.target == f"http://127.0.0.1:{port}/jwks.json"
    assert "hunter2" not in str(caught.value)
    assert "cannot fetch the JWKS: ClientConnectorError" in str(caught.value)


@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("document", "reason"),
    [
        ("<html>login</html>", "not JSON"),
        ({"keys": []}, "no RSA signing key"),
        ("x" * ((1 << 20) + 1), "the JWKS is over 1048576 bytes"),
    ],
)
async def test_a_jwks_url_answering_no_jwks_is_a_config_error(
    jwks_server: JwksServer, document: Any, reason: str
) -> None:
    jwks_server.document = document
    with pytest.raises(ConfigError) as caught:
        await load_url(jwks_server.url)
    assert caught.value.key == "gateway.auth.jwt.jwks_url"
    assert reason in caught.value.reason


# -- a JWKS URL fetched again: for an unknown kid, and at an interval -------------------------


async def load_refetching(url: str, min_interval: float = 30.0) -> TokenVerifier:
    settings = JwtSettings(jwks_url=url, jwks_min_interval=min_interval)
    return await TokenVerifier.load(settings, environ={}, clock=lambda: NOW)


@pytest.mark.asyncio
async def test_an_unknown_kid_refetches_once_within_the_min_interval(
    jwks_server: JwksServer, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    jwks_server.document = {"keys": [jwk(key_a, kid="a")]}
    verifier = await load_refetching(jwks_server.url, min_interval=0)
    jwks_server.document = {"keys": [jwk(key_a, kid="a"), jwk(key_b, kid="b")]}  # rotated
    new = token(key_b, "RS256", kid="b")
    assert rejected(verifier, new).code == "unknown_kid"
    shared = await asyncio.gather(*(verifier.refetch() for _ in range(5)))
    assert shared == [True] * 5  # one fetch, awaited by all
    assert jwks_server.requests == 2
    assert verifier.verify(new).subject == "alice"


@pytest.mark.asyncio
async def test_unknown_kids_cannot_make_it_fetch_more_than_once_an_interval(
    jwks_server: JwksServer, key_a: rsa.RSAPrivateKey
) -> None:
    jwks_server.document = {"keys": [jwk(key_a, kid="a")]}
    verifier = await load_refetching(jwks_server.url, min_interval=3600)
    refetched = [await verifier.refetch() for _ in range(20)]
    interval = await verifier.refetch(unknown_kid=False)  # the interval's own fetch
    assert refetched == [False] * 20
    assert interval is False  # the same document: nothing changed
    assert jwks_server.requests == 2


@pytest.mark.asyncio
async def test_a_withdrawn_key_stops_verifying_its_cached_tokens(
    jwks_server: JwksServer, key_a: rsa.RSAPrivateKey, key_b: rsa.RSAPrivateKey
) -> None:
    jwks_server.document = {"keys": [jwk(key_a, kid="a"), jwk(key_b, kid="b")]}
    verifier = await load_refetching(jwks_server.url)
    old = token(key_a, "RS256", kid="a")
    assert verifier.verify(old).subject == "alice"  # now in the cache of verified tokens
    jwks_server.document = {"keys": [jwk(key_b, kid="b")]}
    assert await verifier.refetch(unknown_kid=False) is True
    assert rejected(verifier, old).code == "unknown_kid"


@pytest.mark.asyncio
async def test_a_failed_refetch_keeps_the_keys_and_says_why(
    jwks_server: JwksServer, key_a: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    jwks_server.document = {"keys": [jwk(key_a, kid="a")]}
    verifier = await load_refetching(jwks_server.url, min_interval=0)
    for status, document in ((503, jwks_server.document), (200, "<html>login</html>")):
        jwks_server.status, jwks_server.document = status, document
        with caplog.at_level("WARNING", logger="flowops.gateway"):
            assert await verifier.refetch() is False
    assert verifier.verify(token(key_a, "RS256", kid="a")).subject == "alice"
    lines = [r.getMessage() for r in caplog.records if r.name == "flowops.gateway"]
    assert len(lines) == 2
    assert "HTTP 503" in lines[0]
    assert "not JSON" in lines[1]
