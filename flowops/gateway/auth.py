"""Who is calling, and may they: API keys and JWT bearer tokens for the gateway.

A client proves who it is with one credential per request:

- an API key, as ``X-API-Key: <key>`` or ``Authorization: ApiKey <key>``. The gateway
  keeps only the key's SHA-256 (the settings hold hashes, never keys), hashes what the
  client sent and compares it with every stored hash in constant time;
- a JWT, as ``Authorization: Bearer <token>``, signed with HS256/384/512 (a shared
  secret from an environment variable or a file) or RS256/384/512 (a PEM public key, or
  a JWKS document from a file or a URL, the key chosen by ``kid``; a URL is fetched
  again at an interval and for a ``kid`` it does not hold, :mod:`flowops.gateway.bearer`).
  The signature, ``exp``, ``nbf``, ``iss`` and ``aud`` are checked; ``alg: none``, an
  algorithm not configured, and an HS token signed with an RSA public key are refused.

:meth:`Authenticator.authenticate` turns the request headers into an :class:`Identity`
or raises :class:`AuthFailure` with status 401 (no credential, or a bad one) and the
``WWW-Authenticate`` value to send; :meth:`Authenticator.authorize` raises status 403
when that identity may not use the route or model. A failure's ``reason`` is safe to
show the client: it never repeats the credential. The YAML section (every key optional)::

    gateway:
      auth:
        realm: flowops                         # named in WWW-Authenticate
        api_keys:
          - name: ci-pipeline                  # the identity: logs, rate limits
            sha256: c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a
            routes: [iris]                     # omitted: every route
            models: [iris]                     # omitted: every model
        api_keys_file: /etc/flowops/api-keys.yaml   # a YAML/JSON list shaped like api_keys
        api_keys_env: FLOWOPS_GATEWAY_API_KEYS      # a variable holding such a list
        jwt:
          algorithms: [RS256]                  # default: HS256 and/or RS256, from the keys set
          secret_env: FLOWOPS_JWT_SECRET       # HS*: the shared secret (or secret_file)
          jwks_url: https://issuer.example/.well-known/jwks.json   # RS*: or jwks_file,
                                               # or public_key_file (one PEM key)
          issuer: https://issuer.example/      # checked when set
          audience: [flowops-gateway]          # checked when set; tokens with aud need it
          leeway: 30                           # seconds of clock skew allowed
          identity_claim: sub
          routes_claim: flowops_routes         # a list (or space-separated string) in tokens
          models_claim: flowops_models
          subjects:                            # per-subject limits, met together with claims
            alice: {routes: [iris]}

Keys are made by :func:`generate_api_key` and hashed for the settings by
:func:`hash_api_key`:

>>> hash_api_key("correct horse battery staple")
'c4bbcb1fbec99d65bf59d85c8cb62ee2db963f0fe106f483d9afa73bd4e39a8a'
>>> len(generate_api_key())
46
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal, TypeAlias

import yaml
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from flowops.errors import ConfigError, FlowOpsError
from flowops.gateway.bearer import (
    AccessSettings,
    JwtSettings,
    TokenError,
    TokenFailureCode,
    TokenVerifier,
)

__all__ = [
    "ANONYMOUS",
    "CREDENTIAL_HEADERS",
    "ApiKeySettings",
    "AuthFailure",
    "AuthFailureCode",
    "AuthSettings",
    "Authenticator",
    "Identity",
    "credential_files",
    "generate_api_key",
    "hash_api_key",
]

log = logging.getLogger(__name__)

AuthFailureCode: TypeAlias = (
    Literal[
        "missing_credentials",
        "malformed_credentials",
        "invalid_key",
        "forbidden_route",
        "forbidden_model",
    ]
    | TokenFailureCode
)
"""Why a request was refused, in a word fit for a metric label or an access log."""

CREDENTIAL_HEADERS: Final = frozenset({"authorization", "x-api-key"})
"""Headers that carry the gateway's credentials: not to be forwarded to model servers."""

_MIN_KEY_CHARS: Final = 16
_SPACE: Final = re.compile(r"\s")
_NAME_PATTERN: Final = r"^[A-Za-z0-9._@+:-]{1,128}$"


def generate_api_key() -> str:
    """A new random API key: ``fo_`` and 256 random bits, URL-safe (46 characters).

    Give the key to the client once; put only :func:`hash_api_key` of it in the settings.
    """
    return "fo_" + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    """The SHA-256 of ``key`` (UTF-8), as the 64 hex digits ``api_keys[].sha256`` holds.

    Keys shorter than 16 characters, or with spaces or control characters at either end,
    are refused (``ValueError``): a short key is found from its hash by brute force, and
    a stray newline would make a hash no client can match.

    >>> hash_api_key("short")
    Traceback (most recent call last):
    ...
    ValueError: an API key needs at least 16 characters (generate_api_key makes one)
    """
    if len(key) < _MIN_KEY_CHARS:
        raise ValueError(
            f"an API key needs at least {_MIN_KEY_CHARS} characters (generate_api_key makes one)"
        )
    if key != key.strip() or not key.isprintable():
        raise ValueError("an API key cannot hold spaces at its ends or control characters")
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


# -- settings ---------------------------------------------------------------------------


class ApiKeySettings(AccessSettings):
    """One API key: who holds it, its SHA-256, and what it may use."""

    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)

    name: str = Field(
        pattern=_NAME_PATTERN, description="who holds the key: the identity in logs and limits"
    )
    sha256: str = Field(description="SHA-256 of the key as 64 hex digits; never the key itself")

    @field_validator("sha256")
    @classmethod
    def _check_hash(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9a-fA-F]{64}", value):
            # the message never repeats the value: it may be a key pasted by mistake
            raise ValueError("expected 64 hex digits, the SHA-256 of the key (hash_api_key)")
        return value.lower()


class AuthSettings(BaseModel):
    """The ``gateway.auth`` section: API keys and JWT verification (both optional)."""

    model_config = ConfigDict(extra="forbid")

    realm: str = Field(
        "flowops", pattern=r'^[^"\\\r\n]+$', description="realm named in WWW-Authenticate"
    )
    api_keys: list[ApiKeySettings] = Field(default_factory=list, description="API keys, hashed")
    api_keys_file: Path | None = Field(
        None, description="YAML or JSON file holding a list shaped like api_keys"
    )
    api_keys_env: str | None = Field(
        None, min_length=1, description="environment variable holding such a list (YAML/JSON)"
    )
    jwt: JwtSettings | None = Field(None, description="JWT bearer tokens; omitted: none")


def credential_files(settings: AuthSettings) -> list[Path]:
    """The files the credentials are read from: re-read when they change
    (:mod:`flowops.gateway.reload`)."""
    jwt = settings.jwt
    candidates = [settings.api_keys_file]
    if jwt is not None:
        candidates += [jwt.secret_file, jwt.public_key_file, jwt.jwks_file]
    return [path for path in candidates if path is not None]


# -- identities and failures ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Identity:
    """Who made a request and what it may use (``None``: everything).

    ``key`` is stable across requests of the same caller: the rate limiter's bucket.

    >>> Identity("key", "ci", routes=frozenset({"iris"})).key
    'key:ci'
    """

    kind: Literal["anonymous", "key", "jwt"]
    name: str
    routes: frozenset[str] | None = None
    models: frozenset[str] | None = None

    @property
    def key(self) -> str:
        """``<kind>:<name>``, e.g. ``key:ci-pipeline`` or ``jwt:alice``."""
        return f"{self.kind}:{self.name}"

    @property
    def anonymous(self) -> bool:
        """True for requests on routes without authentication."""
        return self.kind == "anonymous"


ANONYMOUS: Final = Identity("anonymous", "anonymous")
"""The identity of every request on a route that does not require authentication."""


class AuthFailure(FlowOpsError):  # noqa: N818 - an outcome for the client, not a fault
    """A request refused: ``status`` 401 (who are you?) or 403 (not allowed).

    ``reason`` is safe to send to the client; ``code`` is one word for metrics;
    ``www_authenticate`` is the header value to send with it, or None.
    """

    def __init__(
        self,
        status: Literal[401, 403],
        code: AuthFailureCode,
        reason: str,
        www_authenticate: str | None = None,
    ) -> None:
        self.status = status
        self.code: AuthFailureCode = code
        self.reason = reason
        self.www_authenticate = www_authenticate
        super().__init__(f"{status} {code}: {reason}")


# -- the authenticator ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _StoredKey:
    identity: Identity
    digest: bytes = field(repr=False)


class Authenticator:
    """Checks credentials against the keys and JWT settings loaded at start-up.

    Build it with :meth:`from_settings`; per request, call :meth:`check` (or
    :meth:`authenticate` then :meth:`authorize`). Neither does I/O.
    """

    def __init__(
        self,
        *,
        realm: str = "flowops",
        api_keys: Sequence[_StoredKey] = (),
        verifier: TokenVerifier | None = None,
    ) -> None:
        self._realm = realm
        self._keys = tuple(api_keys)
        self._verifier = verifier

    @classmethod
    async def from_settings(
        cls,
        settings: AuthSettings,
        *,
        environ: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.time,
        where: str = "gateway.auth",
    ) -> Authenticator:
        """Load keys, secrets and public keys; fetch ``jwt.jwks_url`` if set.

        Raises :class:`~flowops.errors.ConfigError` naming the key (``where`` is the
        section's dotted name) for anything unusable, and
        :class:`~flowops.errors.ServiceError` when the JWKS URL does not answer.
        ``clock`` gives the time ``exp`` and ``nbf`` are checked against.
        """
        env = os.environ if environ is None else environ
        keys = _load_api_keys(settings, env, where)
        verifier = None
        if settings.jwt is not None:
            verifier = await TokenVerifier.load(
                settings.jwt, environ=env, clock=clock, where=f"{where}.jwt"
            )
        auth = cls(realm=settings.realm, api_keys=keys, verifier=verifier)
        log.info("gateway auth: %r", auth)
        return auth

    @property
    def refetches(self) -> bool:
        """Whether a token with an unknown key id may verify after :meth:`refetch_keys`."""
        return self._verifier is not None and self._verifier.refetches

    async def refetch_keys(self, *, unknown_kid: bool = True) -> bool:
        """Fetch the JWKS URL again: for a token with an unknown key id (rate-limited),
        or at the interval; True when the keys changed (:meth:`TokenVerifier.refetch`)."""
        verifier = self._verifier
        return verifier is not None and await verifier.refetch(unknown_kid=unknown_kid)

    @property
    def configured(self) -> bool:
        """True if any credential can pass: at least one API key or JWT settings."""
        return bool(self._keys) or self._verifier is not None

    def check(
        self, headers: Mapping[str, str], route: str, model: str | None = None, *, required: bool
    ) -> Identity:
        """The caller's identity if it may use ``route`` (and ``model``); ANONYMOUS when
        the route does not require authentication (credentials are then not looked at)."""
        if not required:
            return ANONYMOUS
        identity = self.authenticate(headers)
        self.authorize(identity, route, model)
        return identity

    def authenticate(self, headers: Mapping[str, str]) -> Identity:
        """The identity the request's one credential proves, or AuthFailure(401).

        ``headers`` is aiohttp's ``request.headers`` or any mapping (names in any case).
        """
        kind, credential = self._credential(headers)
        if kind == "key":
            return self._check_key(credential)
        if self._verifier is None:
            raise self._failure("invalid_token", "bearer tokens are not accepted here")
        try:
            token = self._verifier.verify(credential)
        except TokenError as exc:
            raise self._failure(exc.code, exc.reason, bearer_error="invalid_token") from None
        return Identity("jwt", token.subject, token.routes, token.models)

    def authorize(self, identity: Identity, route: str, model: str | None = None) -> None:
        """AuthFailure(403) unless ``identity`` may use ``route`` and ``model``.

        An identity limited to some models is refused when the request names no model.
        """
        if identity.routes is not None and route not in identity.routes:
            raise self._forbidden(
                identity, "forbidden_route", f"this identity may not use route {route!r}"
            )
        if identity.models is not None and (model is None or model not in identity.models):
            # the model name comes from the request: not repeated to keep the reason safe
            raise self._forbidden(
                identity, "forbidden_model", "this identity may not use this model"
            )

    def _credential(self, headers: Mapping[str, str]) -> tuple[str, str]:
        keys = _header_values(headers, "x-api-key")
        authorization = _header_values(headers, "authorization")
        if not keys and not authorization:
            raise self._failure("missing_credentials", "credentials required")
        if len(keys) + len(authorization) > 1:
            raise self._malformed("send one credential, not several")
        if keys:
            return "key", self._one_token(keys[0])
        scheme, _, value = authorization[0].strip().partition(" ")
        if scheme.lower() == "bearer":
            return "bearer", self._one_token(value)
        if scheme.lower() == "apikey":
            return "key", self._one_token(value)
        raise self._malformed("unsupported authorization scheme: use Bearer or ApiKey")

    def _one_token(self, value: str) -> str:
        value = value.strip()
        if not value or _SPACE.search(value):
            raise self._malformed("malformed credential")
        return value

    def _check_key(self, presented: str) -> Identity:
        if not self._keys:
            raise self._failure("invalid_key", "API keys are not accepted here")
        digest = hashlib.sha256(presented.encode("utf-8", "surrogatepass")).digest()
        found: _StoredKey | None = None
        for stored in self._keys:  # every hash compared: no early exit to time
            if hmac.compare_digest(digest, stored.digest):
                found = stored
        if found is None:
            raise self._failure("invalid_key", "invalid API key")
        return found.identity

    def _failure(
        self, code: AuthFailureCode, reason: str, *, bearer_error: str | None = None
    ) -> AuthFailure:
        return AuthFailure(401, code, reason, self._challenge(bearer_error, reason))

    def _malformed(self, reason: str) -> AuthFailure:
        return self._failure("malformed_credentials", reason, bearer_error="invalid_request")

    def _forbidden(self, identity: Identity, code: AuthFailureCode, reason: str) -> AuthFailure:
        challenge = None
        if identity.kind == "jwt":
            challenge = f'Bearer realm="{self._realm}", error="insufficient_scope"'
        return AuthFailure(403, code, reason, challenge)

    def _challenge(self, bearer_error: str | None, reason: str) -> str:
        """RFC 7235 challenges for the schemes configured; the error goes to Bearer only
        (RFC 6750 §3: none when the request had no credential)."""
        realm = f'realm="{self._realm}"'
        challenges = [f"ApiKey {realm}"] if self._keys or self._verifier is None else []
        if self._verifier is not None:
            description = reason.replace('"', "'").replace("\\", "/")
            detail = f', error="{bearer_error}", error_description="{description}"'
            challenges.append(f"Bearer {realm}{detail if bearer_error else ''}")
        return ", ".join(challenges)

    def __repr__(self) -> str:
        jwt_part = repr(self._verifier) if self._verifier is not None else "no JWT"
        return f"<Authenticator realm={self._realm!r}: {len(self._keys)} API keys, {jwt_part}>"


def _header_values(headers: Mapping[str, str], name: str) -> list[str]:
    """Every value of header ``name``: a multidict's ``getall``, else a scan in any case."""
    getall = getattr(headers, "getall", None)
    if getall is not None:
        return list(getall(name, ()))
    return [value for key, value in headers.items() if key.lower() == name]


# -- API keys from the settings, a file and the environment -----------------------------

_KEY_LIST: Final = TypeAdapter(list[ApiKeySettings])


def _load_api_keys(
    settings: AuthSettings, environ: Mapping[str, str], where: str
) -> list[_StoredKey]:
    sources: list[tuple[str, list[ApiKeySettings]]] = [(f"{where}.api_keys", settings.api_keys)]
    if settings.api_keys_file is not None:
        key = f"{where}.api_keys_file"
        text = _read_text(settings.api_keys_file, key)
        sources.append((key, _parse_key_list(text, key, str(settings.api_keys_file))))
    if settings.api_keys_env is not None:
        key, var = f"{where}.api_keys_env", settings.api_keys_env
        if var not in environ:
            raise ConfigError(key, f"environment variable {var} is not set")
        sources.append((key, _parse_key_list(environ[var], key, f"${var}")))
    return _unique_keys(sources)


def _parse_key_list(text: str, key: str, origin: str) -> list[ApiKeySettings]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        raise ConfigError(key, f"{origin}: not valid YAML or JSON") from None
    try:
        return [] if data is None else _KEY_LIST.validate_python(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
        raise ConfigError(f"{key}{where}", f"{origin}: {first['msg']}") from None


def _unique_keys(sources: list[tuple[str, list[ApiKeySettings]]]) -> list[_StoredKey]:
    """One stored key per entry; a name or a hash seen twice is an error."""
    seen_names: dict[str, str] = {}
    seen_hashes: dict[str, str] = {}
    stored = []
    for prefix, entries in sources:
        for index, entry in enumerate(entries):
            place = f"{prefix}[{index}]"
            if entry.name in seen_names:
                raise ConfigError(
                    f"{place}.name", f"{entry.name!r} is also {seen_names[entry.name]}"
                )
            if entry.sha256 in seen_hashes:
                raise ConfigError(f"{place}.sha256", f"the same key as {seen_hashes[entry.sha256]}")
            seen_names[entry.name] = seen_hashes[entry.sha256] = place
            identity = Identity("key", entry.name, _frozen(entry.routes), _frozen(entry.models))
            stored.append(_StoredKey(identity, bytes.fromhex(entry.sha256)))
    return stored


def _frozen(values: list[str] | None) -> frozenset[str] | None:
    return None if values is None else frozenset(values)


def _read_bytes(path: Path, key: str) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path}: {exc.strerror}") from None


def _read_text(path: Path, key: str) -> str:
    try:
        return _read_bytes(path, key).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(key, f"{path} is not UTF-8 text") from None
