"""JWT bearer tokens for the gateway: where their keys come from and how one is verified.

:class:`TokenVerifier` is loaded once at start-up from :class:`JwtSettings` and then
verifies tokens with no I/O. Its keys, by algorithm family, never mix:

- HS256/384/512: one shared secret, from an environment variable or a file, at least as
  long as the hash (RFC 7518 §3.2);
- RS256/384/512: one PEM public key (or certificate), or the RSA signing keys of a JWKS
  document read from a file or fetched from a URL; a token's ``kid`` picks the key.

A JWKS from a URL is fetched again every ``jwks_refresh`` seconds, and when a token
names a key id it does not hold (an issuer that rotated its keys signs with the new one
at once): :meth:`TokenVerifier.refetch` fetches at most once every
``jwks_min_interval`` seconds for that, so tokens with made-up key ids cannot make the
gateway hammer the issuer, and concurrent requests share one fetch. A fetch that fails
keeps the keys held and logs one line; a new document empties the cache of verified
tokens (a key withdrawn stops verifying at once).

A token is refused unless its header's ``alg`` is one of the configured algorithms
(``none`` never is), and an HS token is only ever checked against the secret, so one
"signed" with the RSA public key as an HMAC secret fails (RFC 8725 §2.1). Then the
signature, ``exp`` and ``nbf`` (against the verifier's clock, with ``leeway``), ``iss``
and ``aud`` (when configured) are checked, and the identity, route and model claims
read. Every refusal is a :class:`TokenError` with a reason fit for the client: it never
repeats the token. :mod:`flowops.gateway.auth` turns it into a 401.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeAlias

import aiohttp
import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
from jwt.algorithms import RSAAlgorithm
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from yarl import URL

from flowops.errors import ConfigError, FlowOpsError, ServiceError

__all__ = [
    "AccessSettings",
    "Algorithm",
    "JwtSettings",
    "TokenError",
    "TokenFailureCode",
    "TokenVerifier",
    "VerifiedToken",
]

Algorithm: TypeAlias = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512"]
"""The JWT algorithms the gateway accepts when configured; ``none`` is never one."""

TokenFailureCode: TypeAlias = Literal[
    "malformed_token",
    "bad_algorithm",
    "unknown_kid",
    "invalid_signature",
    "invalid_token",
    "expired",
    "not_yet_valid",
    "wrong_issuer",
    "wrong_audience",
    "missing_claim",
]
"""Why a token was refused, in a word fit for a metric label."""

_HMAC_MIN_BYTES: Final = {"HS256": 32, "HS384": 48, "HS512": 64}
_RSA_MIN_BITS: Final = 2048
_MAX_JWKS_BYTES: Final = 1 << 20
_MAX_IDENTITY_CHARS: Final = 256
_CACHE_SIZE: Final = 4096

log = logging.getLogger("flowops.gateway")


@dataclass(frozen=True, slots=True)
class _Lifetime:
    """A token's validity window from its claims (None: no bound on that side)."""

    expires: float | None
    not_before: float | None  # the later of nbf and iat

    @classmethod
    def of(cls, claims: Mapping[str, Any]) -> _Lifetime:
        exp, nbf, iat = (_timestamp(claims, name) for name in ("exp", "nbf", "iat"))
        starts = [t for t in (nbf, iat) if t is not None]
        return cls(exp, max(starts) if starts else None)

    def check(self, now: float, leeway: float) -> None:
        if self.expires is not None and now >= self.expires + leeway:
            raise TokenError("expired", "token expired")
        if self.not_before is not None and self.not_before > now + leeway:
            raise TokenError("not_yet_valid", "token not yet valid")


class AccessSettings(BaseModel):
    """What one identity may use. A list left out allows everything; ``[]`` nothing."""

    model_config = ConfigDict(extra="forbid")

    routes: list[str] | None = Field(
        None, description="route names this identity may call; omitted: every route"
    )
    models: list[str] | None = Field(
        None, description="model names this identity may call; omitted: every model"
    )


class JwtSettings(BaseModel):
    """JWT bearer tokens: the algorithms, where their keys are, and the claims checked."""

    model_config = ConfigDict(extra="forbid")

    algorithms: list[Algorithm] = Field(
        default_factory=list,
        description="accepted algorithms; default: HS256 if a secret is set, RS256 if a key is",
    )
    secret_env: str | None = Field(
        None, min_length=1, description="environment variable holding the HS* shared secret"
    )
    secret_file: Path | None = Field(None, description="file holding the HS* shared secret")
    public_key_file: Path | None = Field(
        None, description="PEM RSA public key (or certificate) for RS* tokens"
    )
    jwks_file: Path | None = Field(None, description="JWKS document (JSON) for RS* tokens")
    jwks_url: str | None = Field(
        None,
        description="http(s) URL of a JWKS document: fetched at start-up, every "
        "jwks_refresh seconds, and for a token with an unknown kid",
    )
    jwks_timeout: float = Field(10.0, gt=0, le=300, description="seconds to fetch jwks_url")
    jwks_refresh: float = Field(
        300.0, gt=0, le=86400, description="seconds between two fetches of jwks_url"
    )
    jwks_min_interval: float = Field(
        30.0,
        ge=0,
        le=3600,
        description="a token with an unknown kid fetches jwks_url again, at most this often",
    )
    issuer: str | None = Field(None, min_length=1, description="required `iss`, when set")
    audience: list[str] | None = Field(
        None, min_length=1, description="accepted `aud` values; tokens with `aud` need it set"
    )
    leeway: float = Field(30.0, ge=0, le=300, description="seconds of clock skew for exp/nbf")
    require_exp: bool = Field(True, description="refuse tokens without an `exp` claim")
    identity_claim: str = Field("sub", min_length=1, description="claim naming the identity")
    routes_claim: str | None = Field(
        "flowops_routes", description="claim listing the routes a token may use (when present)"
    )
    models_claim: str | None = Field(
        "flowops_models", description="claim listing the models a token may use (when present)"
    )
    subjects: dict[str, AccessSettings] = Field(
        default_factory=dict, description="per-identity limits, applied with the claims'"
    )

    @field_validator("audience", mode="before")
    @classmethod
    def _one_audience(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @field_validator("jwks_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("expected an http:// or https:// URL")
        return value

    @model_validator(mode="after")
    def _check_keys(self) -> JwtSettings:
        secret = [n for n in ("secret_env", "secret_file") if getattr(self, n) is not None]
        public = [n for n in ("public_key_file", "jwks_file", "jwks_url") if getattr(self, n)]
        if len(secret) > 1 or len(public) > 1:
            raise ValueError(f"set only one of {', '.join(secret if len(secret) > 1 else public)}")
        if not secret and not public:
            raise ValueError(
                "set a secret (secret_env or secret_file) or a public key"
                " (public_key_file, jwks_file or jwks_url)"
            )
        if not self.algorithms:
            defaults: list[Algorithm] = ["HS256"] if secret else []
            self.algorithms = defaults + (["RS256"] if public else [])
        _check_family(self.family("HS"), secret, "HS* algorithms need secret_env or secret_file")
        _check_family(
            self.family("RS"), public, "RS* algorithms need public_key_file, jwks_file or jwks_url"
        )
        return self

    def family(self, prefix: Literal["HS", "RS"]) -> tuple[str, ...]:
        """The configured algorithms of one family, e.g. ``("RS256",)`` for ``"RS"``."""
        return tuple(a for a in self.algorithms if a.startswith(prefix))


def _check_family(algorithms: tuple[str, ...], keys: list[str], missing: str) -> None:
    if algorithms and not keys:
        raise ValueError(missing)
    if keys and not algorithms:
        prefix = "HS" if "secret" in keys[0] else "RS"
        raise ValueError(f"{keys[0]} is set but algorithms lists no {prefix}* algorithm")


class TokenError(Exception):
    """A bearer token refused; ``reason`` is safe to show the client."""

    def __init__(self, code: TokenFailureCode, reason: str) -> None:
        super().__init__(reason)
        self.code: TokenFailureCode = code
        self.reason = reason


class VerifiedToken(NamedTuple):
    """What a valid token proves: who, and the routes and models it may use (None: all)."""

    subject: str
    routes: frozenset[str] | None
    models: frozenset[str] | None


@dataclass(frozen=True, slots=True)
class _VerifyKey:
    """A key that verifies signatures, and the algorithms it may verify."""

    key: RSAPublicKey | bytes = field(repr=False)
    algorithms: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class _KeyRing:
    """The HMAC secret and the RSA public keys; picks the one a token's header names."""

    secret: _VerifyKey | None
    by_kid: Mapping[str, _VerifyKey]
    default: _VerifyKey | None  # the only public key: for tokens without a kid

    def find(self, alg: str, kid: object) -> _VerifyKey:
        if alg.startswith("HS") and self.secret is not None:
            return self.secret  # an HS token meets the secret, never an RSA key
        if isinstance(kid, str) and kid in self.by_kid:
            return self.by_kid[kid]
        if self.default is not None and (kid is None or not self.by_kid):
            return self.default  # a PEM key (no kids) verifies any kid
        raise TokenError("unknown_kid", "unknown key id" if kid else "token names no key id")


class TokenVerifier:
    """Verifies a token's signature and claims against keys loaded once (:meth:`load`).

    ``clock`` is the time ``exp``, ``nbf`` and ``iat`` are checked against. Tokens that
    verified are remembered (the last 4096, by the SHA-256 of their text), so a
    client's next request with the same token costs a lookup and the time check (under
    10 µs through the authenticator), not a parse and a signature check (about 150 µs
    for HS256 and 200 µs for RS256, most of it PyJWT's parsing; measured on 2 cores).
    """

    def __init__(
        self,
        settings: JwtSettings,
        ring: _KeyRing,
        clock: Callable[[], float],
        *,
        jwks: Any = None,
        where: str = "gateway.auth.jwt",
    ) -> None:
        self._settings = settings
        self._algorithms = frozenset(settings.algorithms)
        self._ring = ring
        self._clock = clock
        self._where = where
        self._jwks = jwks  # the document fetched from jwks_url, to see a change
        self._fetched_at = time.monotonic()
        self._fetching: asyncio.Task[bool] | None = None
        self._verified: dict[bytes, tuple[VerifiedToken, _Lifetime]] = {}  # by SHA-256
        self._options: jwt.types.Options = {
            "verify_signature": True,
            "verify_exp": False,  # exp, nbf, iat: against self._clock, in _Lifetime
            "verify_nbf": False,
            "verify_iat": False,
            "verify_iss": True,
            "verify_aud": True,
            "require": ["exp"] if settings.require_exp else [],
            "enforce_minimum_key_length": True,
        }

    @classmethod
    async def load(
        cls,
        settings: JwtSettings,
        *,
        environ: Mapping[str, str],
        clock: Callable[[], float] = time.time,
        where: str = "gateway.auth.jwt",
    ) -> TokenVerifier:
        """Read the secret and the public keys; fetch ``jwks_url`` if set.

        ConfigError names the setting (under ``where``) that cannot be used; ServiceError
        says the JWKS URL did not answer.
        """
        hs = settings.family("HS")
        secret = _VerifyKey(_read_secret(settings, environ, where, hs), hs) if hs else None
        jwks = None
        if settings.jwks_url is not None:
            jwks = await _fetch_jwks(settings.jwks_url, settings.jwks_timeout, f"{where}.jwks_url")
            public = _url_keys(settings, jwks, where)
        else:
            public = _public_keys(settings, where)
        return cls(settings, _ring(secret, public), clock, jwks=jwks, where=where)

    @property
    def refetches(self) -> bool:
        """Whether its keys come from a URL (:meth:`refetch` may find new ones)."""
        return self._settings.jwks_url is not None

    async def refetch(self, *, unknown_kid: bool = True) -> bool:
        """Fetch ``jwks_url`` again; True when the keys changed.

        For an unknown key id, at most once every ``jwks_min_interval`` seconds (False
        at once within it); concurrent callers await the same fetch. A failed fetch
        keeps the keys held, logs one line and returns False."""
        if not self.refetches:
            return False
        if self._fetching is None or self._fetching.done():
            since = time.monotonic() - self._fetched_at
            if unknown_kid and since < self._settings.jwks_min_interval:
                return False
            self._fetched_at = time.monotonic()
            self._fetching = asyncio.get_running_loop().create_task(self._fetch())
        return await asyncio.shield(self._fetching)

    async def _fetch(self) -> bool:
        settings = self._settings
        assert settings.jwks_url is not None
        try:
            key = f"{self._where}.jwks_url"
            document = await _fetch_jwks(settings.jwks_url, settings.jwks_timeout, key)
            if document == self._jwks:
                return False
            ring = _ring(self._ring.secret, _url_keys(settings, document, self._where))
        except FlowOpsError as exc:
            log.warning("gateway auth: the JWKS could not be fetched again; kept its keys: %s", exc)
            return False
        self._ring, self._jwks = ring, document
        self._verified.clear()  # a key withdrawn verifies no more tokens, cached ones either
        log.info("gateway auth: new JWKS keys, key ids %s", sorted(ring.by_kid))
        return True

    def verify(self, token: str) -> VerifiedToken:
        """What ``token`` proves, or TokenError."""
        digest = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        known = self._verified.get(digest)
        if known is not None:
            known[1].check(self._clock(), self._settings.leeway)
            return known[0]
        grant, lifetime = self._verify_new(token)
        if len(self._verified) >= _CACHE_SIZE:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[digest] = (grant, lifetime)
        return grant

    def _verify_new(self, token: str) -> tuple[VerifiedToken, _Lifetime]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise TokenError("malformed_token", "malformed token") from None
        alg = header.get("alg")
        if alg not in self._algorithms:  # "none" never is
            raise TokenError("bad_algorithm", "token algorithm not accepted")
        claims = self._decode(token, self._ring.find(alg, header.get("kid")))
        lifetime = _Lifetime.of(claims)
        lifetime.check(self._clock(), self._settings.leeway)
        return self._grant(claims), lifetime

    def _decode(self, token: str, key: _VerifyKey) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key.key,
                algorithms=list(key.algorithms),
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                options=self._options,
            )
        except jwt.InvalidSignatureError:
            raise TokenError("invalid_signature", "token signature does not verify") from None
        except jwt.InvalidAlgorithmError:
            raise TokenError("bad_algorithm", "token algorithm not accepted") from None
        except jwt.InvalidIssuerError:
            raise TokenError("wrong_issuer", "token issuer not accepted") from None
        except jwt.InvalidAudienceError:
            raise TokenError("wrong_audience", "token audience not accepted") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenError("missing_claim", f"token lacks the {exc.claim!r} claim") from None
        except jwt.PyJWTError:
            raise TokenError("invalid_token", "token cannot be verified") from None

    def _grant(self, claims: Mapping[str, Any]) -> VerifiedToken:
        claim = self._settings.identity_claim
        name = claims.get(claim)
        if not isinstance(name, str) or not 0 < len(name) <= _MAX_IDENTITY_CHARS:
            raise TokenError("missing_claim", f"token lacks a usable {claim!r} claim")
        if not name.isprintable():
            raise TokenError("missing_claim", f"token lacks a usable {claim!r} claim")
        limits = self._settings.subjects.get(name, AccessSettings())
        routes = _claim_set(claims, self._settings.routes_claim)
        models = _claim_set(claims, self._settings.models_claim)
        return VerifiedToken(name, _both(routes, limits.routes), _both(models, limits.models))

    def __repr__(self) -> str:
        algorithms = "/".join(sorted(self._algorithms))
        return f"<TokenVerifier {algorithms}, key ids {sorted(self._ring.by_kid)}>"


def _timestamp(claims: Mapping[str, Any], name: str) -> float | None:
    value = claims.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise TokenError("invalid_token", f"claim {name!r} is not a number")
    return float(value)


def _claim_set(claims: Mapping[str, Any], name: str | None) -> frozenset[str] | None:
    """A list claim (or an OAuth-style space-separated string) as a set; None if absent."""
    value = None if name is None else claims.get(name)
    if value is None:
        return None
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise TokenError("invalid_token", f"claim {name!r} is not a list of strings")


def _both(claimed: frozenset[str] | None, configured: list[str] | None) -> frozenset[str] | None:
    """What both limits allow (None: no limit)."""
    if configured is None:
        return claimed
    return frozenset(configured) if claimed is None else claimed & frozenset(configured)


# -- loading keys -----------------------------------------------------------------------


def _read_secret(
    settings: JwtSettings, environ: Mapping[str, str], where: str, hs: tuple[str, ...]
) -> bytes:
    if settings.secret_env is not None:
        key, var = f"{where}.secret_env", settings.secret_env
        if not environ.get(var):
            raise ConfigError(key, f"environment variable {var} is not set or empty")
        secret = environ[var].encode("utf-8")
    else:
        assert settings.secret_file is not None  # the settings hold one or the other
        key = f"{where}.secret_file"
        secret = _read_bytes(settings.secret_file, key).rstrip(b"\r\n")
    if b"-----BEGIN" in secret:
        raise ConfigError(key, "this looks like a PEM key; an HMAC secret is random bytes")
    need = max(_HMAC_MIN_BYTES[alg] for alg in hs)
    if len(secret) < need:
        raise ConfigError(key, f"the secret has {len(secret)} bytes; {'/'.join(hs)} need {need}")
    return secret


def _ring(secret: _VerifyKey | None, public: list[tuple[str | None, _VerifyKey]]) -> _KeyRing:
    by_kid = {kid: verify for kid, verify in public if kid is not None}
    default = public[0][1] if len(public) == 1 else None
    return _KeyRing(secret, by_kid, default)


def _url_keys(
    settings: JwtSettings, document: Any, where: str
) -> list[tuple[str | None, _VerifyKey]]:
    """The RSA keys of the JWKS ``document`` fetched from ``jwks_url``."""
    assert settings.jwks_url is not None
    origin = _shown(settings.jwks_url)
    return _jwks_keys(document, settings.family("RS"), f"{where}.jwks_url", origin)


def _public_keys(settings: JwtSettings, where: str) -> list[tuple[str | None, _VerifyKey]]:
    """The RSA keys of a file, each with its key id (None for a PEM file); [] without
    RS* (a JWKS from a URL: :func:`_url_keys`)."""
    rs = settings.family("RS")
    if settings.public_key_file is not None:
        key = f"{where}.public_key_file"
        pem = _read_bytes(settings.public_key_file, key)
        return [(None, _VerifyKey(_pem_public_key(pem, key), rs))]
    if settings.jwks_file is not None:
        key, origin = f"{where}.jwks_file", str(settings.jwks_file)
        return _jwks_keys(_json(_read_bytes(settings.jwks_file, key), key, origin), rs, key, origin)
    return []


def _read_bytes(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None


def _pem_public_key(pem: bytes, key: str) -> RSAPublicKey:
    public: object
    try:
        if b"BEGIN CERTIFICATE" in pem:
            public = x509.load_pem_x509_certificate(pem).public_key()
        else:
            public = serialization.load_pem_public_key(pem)
    except ValueError:
        raise ConfigError(
            key, "not a PEM public key or certificate (never a private key)"
        ) from None
    return _strong_rsa(public, key)


def _strong_rsa(public: object, key: str) -> RSAPublicKey:
    if not isinstance(public, RSAPublicKey):
        raise ConfigError(key, "not an RSA public key")
    if public.key_size < _RSA_MIN_BITS:
        raise ConfigError(key, f"an RSA key of {public.key_size} bits; at least {_RSA_MIN_BITS}")
    return public


def _json(body: bytes, key: str, origin: str) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        raise ConfigError(key, f"{origin}: not JSON") from None


def _jwks_keys(
    document: Any, rs: tuple[str, ...], key: str, origin: str
) -> list[tuple[str | None, _VerifyKey]]:
    """The RSA signing keys of a JWKS usable with the algorithms ``rs``; others skipped."""
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ConfigError(key, f"{origin}: not a JWKS document (an object with a 'keys' list)")
    found: list[tuple[str | None, _VerifyKey]] = []
    for index, jwk in enumerate(document["keys"]):
        place = f"{origin}: keys[{index}]"
        if not isinstance(jwk, dict):
            raise ConfigError(key, f"{place}: not a JSON object")
        alg, kid = jwk.get("alg"), jwk.get("kid")
        if jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            continue  # encryption keys, EC keys: not for RS* signatures
        if (alg is not None and alg not in rs) or not isinstance(kid, str | None):
            continue
        if "d" in jwk:
            raise ConfigError(key, f"{place}: a private key; a JWKS publishes public keys only")
        if kid is not None and any(kid == seen for seen, _ in found):
            raise ConfigError(key, f"{place}: key id {kid!r} appears twice")
        found.append((kid, _VerifyKey(_jwk_public_key(jwk, key, place), (alg,) if alg else rs)))
    if not found:
        raise ConfigError(key, f"{origin}: no RSA signing key for {', '.join(rs)}")
    return found


def _jwk_public_key(jwk: dict[str, Any], key: str, place: str) -> RSAPublicKey:
    try:
        public = RSAAlgorithm.from_jwk(jwk)
    except (jwt.PyJWTError, ValueError, TypeError):
        raise ConfigError(key, f"{place}: not a valid RSA key") from None
    return _strong_rsa(public, f"{key}: {place}")


async def _fetch_jwks(url: str, timeout: float, key: str) -> Any:
    """GET the JWKS at ``url``: ServiceError if it does not answer 200, ConfigError if
    what it answers is not JSON or over 1 MiB."""
    shown = _shown(url)
    body = bytearray()
    try:
        async with (
            aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
            session.get(url, headers={"Accept": "application/json"}) as response,
        ):
            if response.status != 200:
                raise ServiceError(shown, f"the JWKS request answered HTTP {response.status}")
            async for chunk in response.content.iter_any():
                body += chunk
                if len(body) > _MAX_JWKS_BYTES:
                    raise ConfigError(key, f"{shown}: the JWKS is over {_MAX_JWKS_BYTES} bytes")
    except (aiohttp.ClientError, TimeoutError) as exc:
        raise ServiceError(shown, f"cannot fetch the JWKS: {type(exc).__name__}") from None
    return _json(bytes(body), key, shown)


def _shown(url: str) -> str:
    """``url`` without user and password, to name it in messages and logs."""
    return str(URL(url).with_user(None))
