"""flowops.gateway.auth: API keys and JWTs in, an identity or a 401/403 out.

Every refusal a client can meet is here with its status, code and WWW-Authenticate
value; token verification in detail (key loading, kid, leeway, JWKS over HTTP) is in
test_bearer.py. Time is a fixed clock, never the machine's.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import ValidationError

from flowops.errors import ConfigError
from flowops.gateway.auth import (
    ANONYMOUS,
    Authenticator,
    AuthFailure,
    AuthSettings,
    Identity,
    generate_api_key,
    hash_api_key,
)

NOW = 1_800_000_000.0
CI_KEY = "fo_ci-pipeline-key-0123456789abcdefghijkl"
OPS_KEY = "fo_operations-key-abcdefghijklmnop0123456789"
SECRET = "hs-secret-for-the-gateway-tests-0123456789-abcdefghijklmnopqrstuv"  # 64 bytes
ISSUER = "https://issuer.test/"
AUDIENCE = "flowops-gateway"


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def build(
    settings: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
) -> Authenticator:
    parsed = AuthSettings.model_validate(settings)
    return asyncio.run(
        Authenticator.from_settings(parsed, environ=environ or {}, clock=lambda: NOW)
    )


def claims(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(NOW) - 60,
        "exp": int(NOW) + 600,
    }
    base.update(overrides)
    return {name: value for name, value in base.items() if value is not None}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], hmac_secret: bytes | None) -> str:
    """A token made by hand, as an attacker would: HMAC-signed with any bytes, or unsigned."""
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}"
    if hmac_secret is None:
        return signing_input + "."
    signature = hmac.new(hmac_secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(signature)}"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def key_entry(name: str, key: str, **access: Any) -> dict[str, Any]:
    return {"name": name, "sha256": hash_api_key(key), **access}


@pytest.fixture
def keys_only() -> Authenticator:
    return build(
        {
            "api_keys": [
                key_entry("ci", CI_KEY, routes=["iris"], models=["iris-v1", "iris-v2"]),
                key_entry("ops", OPS_KEY),
            ]
        }
    )


@pytest.fixture
def everything(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> Authenticator:
    """API keys, HS256 and RS256 (PEM), issuer and audience checked."""
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(public_pem(rsa_key))
    settings = {
        "api_keys": [key_entry("ci", CI_KEY, routes=["iris"])],
        "jwt": {
            "algorithms": ["HS256", "RS256"],
            "secret_env": "JWT_SECRET",
            "public_key_file": str(pem),
            "issuer": ISSUER,
            "audience": AUDIENCE,
            "subjects": {"bob": {"models": ["iris-v1"]}},
        },
    }
    return build(settings, {"JWT_SECRET": SECRET})


def refusal(auth: Authenticator, headers: Mapping[str, str]) -> AuthFailure:
    with pytest.raises(AuthFailure) as caught:
        auth.authenticate(headers)
    return caught.value


# -- making and hashing keys -------------------------------------------------------------


def test_hash_api_key_is_the_sha256_hex_of_the_utf8_key() -> None:
    key = "fo_clé-with-unicode-0123456789"
    assert hash_api_key(key) == hashlib.sha256(key.encode("utf-8")).hexdigest()


@pytest.mark.parametrize("key", ["short-key", " fo_leading-space-0123456789", "fo_0123456789abc\n"])
def test_hash_api_key_refuses_keys_that_cannot_work(key: str) -> None:
    with pytest.raises(ValueError, match="API key"):
        hash_api_key(key)


def test_generated_keys_are_distinct_and_accepted() -> None:
    first, second = generate_api_key(), generate_api_key()
    assert first != second
    assert first.startswith("fo_")
    auth = build({"api_keys": [key_entry("a", first), key_entry("b", second)]})
    assert auth.authenticate({"X-API-Key": second}).key == "key:b"


# -- API keys ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "headers",
    [
        {"X-API-Key": CI_KEY},
        {"x-api-key": CI_KEY},
        {"Authorization": f"ApiKey {CI_KEY}"},
        {"authorization": f"apikey   {CI_KEY}  "},
        CIMultiDictProxy(CIMultiDict({"X-Api-Key": CI_KEY})),
    ],
    ids=["x-api-key", "lower-case", "authorization", "scheme-any-case", "aiohttp-headers"],
)
def test_an_api_key_proves_its_name_and_limits(
    keys_only: Authenticator, headers: Mapping[str, str]
) -> None:
    identity = keys_only.authenticate(headers)
    assert identity == Identity(
        "key", "ci", routes=frozenset({"iris"}), models=frozenset({"iris-v1", "iris-v2"})
    )
    assert identity.key == "key:ci"
    assert not identity.anonymous


def test_every_stored_hash_is_compared_even_after_a_match(
    keys_only: Authenticator, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[bytes] = []
    compare = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        compared.append(b)
        return compare(a, b)

    monkeypatch.setattr(hmac, "compare_digest", counting)
    assert keys_only.authenticate({"X-API-Key": CI_KEY}).name == "ci"  # the first stored key
    assert len(compared) == 2
    with pytest.raises(AuthFailure):
        keys_only.authenticate({"X-API-Key": "fo_not-a-key-anyone-holds-000000"})
    assert len(compared) == 4


def test_keys_load_from_a_yaml_file_a_json_file_and_the_environment(tmp_path: Path) -> None:
    yaml_file = tmp_path / "keys.yaml"
    yaml_file.write_text(
        f"- name: ci\n  sha256: {hash_api_key(CI_KEY).upper()}\n  routes: [iris]\n"
    )
    json_env = json.dumps([key_entry("ops", OPS_KEY, models=["iris-v1"])])
    auth = build(
        {"api_keys_file": str(yaml_file), "api_keys_env": "GW_KEYS"}, {"GW_KEYS": json_env}
    )
    assert auth.authenticate({"X-API-Key": CI_KEY}) == Identity("key", "ci", frozenset({"iris"}))
    assert auth.authenticate({"X-API-Key": OPS_KEY}).models == frozenset({"iris-v1"})

    json_file = tmp_path / "keys.json"
    json_file.write_text(json.dumps([key_entry("ops", OPS_KEY)]))
    assert build({"api_keys_file": str(json_file)}).authenticate({"X-API-Key": OPS_KEY}).name == (
        "ops"
    )


def test_an_empty_keys_file_holds_no_keys(tmp_path: Path) -> None:
    empty = tmp_path / "keys.yaml"
    empty.write_text("")
    auth = build({"api_keys_file": str(empty)})
    assert not auth.configured
    assert refusal(auth, {"X-API-Key": CI_KEY}).code == "invalid_key"


# -- 401: no credential, a bad one, a malformed one -------------------------------------------


def test_no_credential_is_401_with_every_challenge_and_no_error(
    everything: Authenticator,
) -> None:
    failure = refusal(everything, {"Accept": "application/json"})
    assert (failure.status, failure.code) == (401, "missing_credentials")
    assert failure.www_authenticate == 'ApiKey realm="flowops", Bearer realm="flowops"'


def test_a_wrong_api_key_is_401(keys_only: Authenticator) -> None:
    failure = refusal(keys_only, {"X-API-Key": "fo_wrong-key-0123456789abcdefghij"})
    assert (failure.status, failure.code, failure.reason) == (401, "invalid_key", "invalid API key")
    assert failure.www_authenticate == 'ApiKey realm="flowops"'


def test_the_hash_itself_is_not_a_key(keys_only: Authenticator) -> None:
    assert refusal(keys_only, {"X-API-Key": hash_api_key(CI_KEY)}).code == "invalid_key"


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "Basic YWxpY2U6c2VjcmV0"},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer   "},
        {"Authorization": "Bearer two tokens"},
        {"Authorization": "ApiKey"},
        {"X-API-Key": "  "},
        {"X-API-Key": CI_KEY, "Authorization": f"ApiKey {CI_KEY}"},
        CIMultiDictProxy(CIMultiDict([("X-API-Key", CI_KEY), ("X-API-Key", OPS_KEY)])),
    ],
    ids=[
        "basic-scheme",
        "bearer-empty",
        "bearer-blank",
        "bearer-two-words",
        "apikey-empty",
        "x-api-key-blank",
        "two-headers",
        "header-twice",
    ],
)
def test_malformed_credentials_are_401_invalid_request(
    everything: Authenticator, headers: Mapping[str, str]
) -> None:
    failure = refusal(everything, headers)
    assert (failure.status, failure.code) == (401, "malformed_credentials")
    assert 'Bearer realm="flowops", error="invalid_request"' in (failure.www_authenticate or "")
    assert CI_KEY not in failure.reason
    assert "YWxpY2U6c2VjcmV0" not in failure.reason


def test_a_kind_of_credential_not_configured_is_401(keys_only: Authenticator) -> None:
    token = jwt.encode(claims(), SECRET, algorithm="HS256")
    failure = refusal(keys_only, bearer(token))
    assert (failure.status, failure.code) == (401, "invalid_token")
    jwt_only = build({"jwt": {"secret_env": "S"}}, {"S": SECRET})
    assert refusal(jwt_only, {"X-API-Key": CI_KEY}).code == "invalid_key"


# -- 401: tokens ------------------------------------------------------------------------------


def hs256(**overrides: Any) -> str:
    return jwt.encode(claims(**overrides), SECRET, algorithm="HS256")


@pytest.mark.parametrize(
    ("make_token", "code"),
    [
        (lambda key: hs256(exp=int(NOW) - 31), "expired"),
        (lambda key: hs256(nbf=int(NOW) + 31), "not_yet_valid"),
        (lambda key: hs256(iat=int(NOW) + 3600), "not_yet_valid"),
        (lambda key: hs256(iss="https://elsewhere.test/"), "wrong_issuer"),
        (lambda key: hs256(iss=None), "missing_claim"),
        (lambda key: hs256(aud="another-service"), "wrong_audience"),
        (lambda key: hs256(aud=None), "missing_claim"),
        (lambda key: hs256(exp=None), "missing_claim"),
        (lambda key: hs256(sub=None), "missing_claim"),
        (lambda key: hs256(exp="tomorrow"), "invalid_token"),
        (lambda key: hs256()[:-4] + "AAAA", "invalid_signature"),
        (lambda key: jwt.encode(claims(), SECRET[::-1], algorithm="HS256"), "invalid_signature"),
        (lambda key: jwt.encode(claims(), key, algorithm="RS256"), "invalid_signature"),
        (lambda key: jwt.encode(claims(), SECRET, algorithm="HS512"), "bad_algorithm"),
        (lambda key: forged({"alg": "none", "typ": "JWT"}, claims(), None), "bad_algorithm"),
        (lambda key: forged({"alg": "None"}, claims(), None), "bad_algorithm"),
        (lambda key: forged({"typ": "JWT"}, claims(), SECRET.encode()), "bad_algorithm"),
        (lambda key: "not.a.token", "malformed_token"),
        (lambda key: "eyJhbGciOiJIUzI1NiJ9", "malformed_token"),
    ],
    ids=[
        "expired",
        "nbf-in-future",
        "iat-in-future",
        "wrong-iss",
        "no-iss",
        "wrong-aud",
        "no-aud",
        "no-exp",
        "no-sub",
        "exp-not-a-number",
        "tampered-signature",
        "other-secret",
        "other-rsa-key",
        "alg-not-configured",
        "alg-none",
        "alg-None",
        "no-alg",
        "garbage",
        "one-segment",
    ],
)
def test_each_bad_token_is_401_invalid_token(
    everything: Authenticator, other_rsa_key: rsa.RSAPrivateKey, make_token: Any, code: str
) -> None:
    token = make_token(other_rsa_key)
    failure = refusal(everything, bearer(token))
    assert (failure.status, failure.code) == (401, code)
    assert failure.www_authenticate is not None
    assert 'Bearer realm="flowops", error="invalid_token", error_description="' in (
        failure.www_authenticate
    )
    assert token not in failure.reason
    assert token not in failure.www_authenticate


def test_an_hs256_token_signed_with_the_rsa_public_key_is_refused(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, everything: Authenticator
) -> None:
    """Algorithm confusion (RFC 8725 §2.1): the attacker knows the public key and signs
    an HS256 token with it as the HMAC secret, hoping the RSA key is used to check it."""
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(public_pem(rsa_key))
    token = forged({"alg": "HS256", "typ": "JWT"}, claims(), public_pem(rsa_key))
    rs_only = build({"jwt": {"public_key_file": str(pem), "audience": AUDIENCE}})
    assert refusal(rs_only, bearer(token)).code == "bad_algorithm"
    # with HS256 configured too, an HS token only ever meets the configured secret
    assert refusal(everything, bearer(token)).code == "invalid_signature"


def test_unknown_kid_is_401(tmp_path: Path, rsa_key: rsa.RSAPrivateKey) -> None:
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(rsa_key.public_key()))
    jwks = tmp_path / "jwks.json"
    jwks.write_text(json.dumps({"keys": [{**jwk, "kid": "k1"}]}))
    auth = build({"jwt": {"jwks_file": str(jwks)}})
    token = jwt.encode(claims(aud=None), rsa_key, algorithm="RS256", headers={"kid": "k2"})
    failure = refusal(auth, bearer(token))
    assert (failure.status, failure.code, failure.reason) == (401, "unknown_kid", "unknown key id")


# -- valid tokens ---------------------------------------------------------------------------


def test_a_valid_hs256_token_proves_its_subject_and_claimed_limits(
    everything: Authenticator,
) -> None:
    token = hs256(flowops_routes=["iris", "wine"], flowops_models="iris-v1 iris-v2")
    identity = everything.authenticate(bearer(token))
    assert identity == Identity(
        "jwt", "alice", frozenset({"iris", "wine"}), frozenset({"iris-v1", "iris-v2"})
    )
    assert identity.key == "jwt:alice"


def test_a_valid_rs256_token_meets_the_subjects_configured_limits(
    everything: Authenticator, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(claims(sub="bob", flowops_models=["iris-v1", "x"]), rsa_key, "RS256")
    identity = everything.authenticate(bearer(token))
    assert (identity.key, identity.routes, identity.models) == (
        "jwt:bob",
        None,
        frozenset({"iris-v1"}),
    )


def test_leeway_accepts_a_token_just_expired(everything: Authenticator) -> None:
    assert everything.authenticate(bearer(hs256(exp=int(NOW) - 29))).name == "alice"
    assert everything.authenticate(bearer(hs256(nbf=int(NOW) + 29))).name == "alice"


# -- 403: who may use what ----------------------------------------------------------------------


def test_a_key_may_use_its_routes_and_models_only(keys_only: Authenticator) -> None:
    ci = keys_only.authenticate({"X-API-Key": CI_KEY})
    keys_only.authorize(ci, "iris", "iris-v2")
    for route, model, code in [
        ("wine", "iris-v1", "forbidden_route"),
        ("iris", "iris-v3", "forbidden_model"),
        ("iris", None, "forbidden_model"),
    ]:
        with pytest.raises(AuthFailure) as caught:
            keys_only.authorize(ci, route, model)
        assert (caught.value.status, caught.value.code) == (403, code)
        assert caught.value.www_authenticate is None
    ops = keys_only.authenticate({"X-API-Key": OPS_KEY})
    keys_only.authorize(ops, "wine", None)  # no limits: everything


def test_a_token_not_allowed_on_a_route_is_403_insufficient_scope(
    everything: Authenticator,
) -> None:
    with pytest.raises(AuthFailure) as caught:
        everything.check(bearer(hs256(flowops_routes=["wine"])), "iris", required=True)
    assert (caught.value.status, caught.value.code) == (403, "forbidden_route")
    assert caught.value.reason == "this identity may not use route 'iris'"
    assert caught.value.www_authenticate == 'Bearer realm="flowops", error="insufficient_scope"'


def test_a_model_name_from_the_request_is_not_repeated_in_the_reason(
    keys_only: Authenticator,
) -> None:
    ci = keys_only.authenticate({"X-API-Key": CI_KEY})
    with pytest.raises(AuthFailure) as caught:
        keys_only.authorize(ci, "iris", '<script>"x"</script>')
    assert "script" not in caught.value.reason


def test_check_authenticates_then_authorizes(everything: Authenticator) -> None:
    identity = everything.check({"X-API-Key": CI_KEY}, "iris", "any-model", required=True)
    assert identity.key == "key:ci"
    with pytest.raises(AuthFailure) as caught:
        everything.check({}, "iris", required=True)
    assert caught.value.status == 401


def test_a_route_without_auth_is_anonymous_whatever_the_headers(
    everything: Authenticator,
) -> None:
    assert everything.check({}, "public", required=False) is ANONYMOUS
    assert everything.check({"X-API-Key": "wrong"}, "public", required=False) is ANONYMOUS
    assert ANONYMOUS.anonymous
    assert ANONYMOUS.key == "anonymous:anonymous"


# -- settings that cannot work ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "loc"),
    [
        ({"api_keys": [{"name": "ci", "sha256": "abc"}]}, ("api_keys", 0, "sha256")),
        ({"api_keys": [{"name": "ci", "sha256": "g" * 64}]}, ("api_keys", 0, "sha256")),
        ({"api_keys": [{"name": "c i", "sha256": "a" * 64}]}, ("api_keys", 0, "name")),
        ({"api_keys": [{"name": "ci", "sha256": "a" * 64, "key": "x"}]}, ("api_keys", 0, "key")),
        ({"jwt": {"algorithms": ["none"], "secret_env": "S"}}, ("jwt", "algorithms", 0)),
        ({"jwt": {"algorithms": ["ES256"], "secret_env": "S"}}, ("jwt", "algorithms", 0)),
        ({"jwt": {"algorithms": ["RS256"], "secret_env": "S"}}, ("jwt",)),
        ({"jwt": {"algorithms": ["HS256"], "jwks_file": "j.json"}}, ("jwt",)),
        ({"jwt": {"secret_env": "S", "secret_file": "s.txt"}}, ("jwt",)),
        ({"jwt": {"jwks_file": "j.json", "jwks_url": "http://127.0.0.1/j"}}, ("jwt",)),
        ({"jwt": {"issuer": ISSUER}}, ("jwt",)),
        ({"jwt": {"jwks_url": "file:///etc/jwks.json"}}, ("jwt", "jwks_url")),
        ({"realm": 'a"b'}, ("realm",)),
        ({"api_key": []}, ("api_key",)),
    ],
)
def test_invalid_settings_name_the_key(settings: dict[str, Any], loc: tuple[Any, ...]) -> None:
    with pytest.raises(ValidationError) as caught:
        AuthSettings.model_validate(settings)
    assert caught.value.errors()[0]["loc"] == loc


def test_a_key_pasted_in_place_of_its_hash_is_not_repeated_by_the_error() -> None:
    pasted = "fo_" + "k" * 61  # 64 characters, not hex
    with pytest.raises(ValidationError) as caught:
        AuthSettings.model_validate({"api_keys": [{"name": "ci", "sha256": pasted}]})
    assert pasted not in str(caught.value)
    assert "64 hex digits" in caught.value.errors()[0]["msg"]


@pytest.mark.parametrize(
    ("file_text", "environ", "key", "reason"),
    [
        (None, {}, "gateway.auth.api_keys_file", "cannot read"),
        ("- name: ci\n  sha256: [", {}, "gateway.auth.api_keys_file", "not valid YAML"),
        ("name: ci", {}, "gateway.auth.api_keys_file", "valid list"),
        ("- {name: a, sha256: " + "a" * 64 + "}\n- {name: b, sha256: abc}",
         {}, "gateway.auth.api_keys_file[1].sha256", "64 hex digits"),
        ("- {name: ci, sha256: " + "b" * 64 + "}", {}, "gateway.auth.api_keys_file[0].name",
         "'ci' is also gateway.auth.api_keys[0]"),
        ("- {name: other, sha256: " + "a" * 64 + "}", {}, "gateway.auth.api_keys_file[0].sha256",
         "the same key as gateway.auth.api_keys[0]"),
    ],
)  # fmt: skip
def test_unusable_key_files_are_config_errors_naming_the_key(
    tmp_path: Path, file_text: str | None, environ: dict[str, str], key: str, reason: str
) -> None:
    path = tmp_path / "keys.yaml"
    if file_text is not None:
        path.write_text(file_text)
    settings = {"api_keys": [{"name": "ci", "sha256": "a" * 64}], "api_keys_file": str(path)}
    with pytest.raises(ConfigError) as caught:
        build(settings, environ)
    assert caught.value.key == key
    assert reason in caught.value.reason


@pytest.mark.parametrize(
    ("environ", "key", "reason"),
    [
        ({}, "gateway.auth.api_keys_env", "environment variable GW_KEYS is not set"),
        ({"GW_KEYS": "[{name: ci}]"}, "gateway.auth.api_keys_env[0].sha256", "$GW_KEYS: Field"),
    ],
)
def test_unusable_key_variables_are_config_errors(
    environ: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"api_keys_env": "GW_KEYS"}, environ)
    assert (caught.value.key, caught.value.reason[: len(reason)]) == (key, reason)


@pytest.mark.parametrize(
    ("jwt_settings", "environ", "key", "reason"),
    [
        ({"secret_env": "S"}, {}, "gateway.auth.jwt.secret_env", "environment variable S"),
        ({"secret_env": "S"}, {"S": "x" * 31}, "gateway.auth.jwt.secret_env", "31 bytes"),
        ({"secret_env": "S", "algorithms": ["HS256", "HS512"]}, {"S": "x" * 63},
         "gateway.auth.jwt.secret_env", "HS256/HS512 need 64"),
        ({"secret_file": "missing.txt"}, {}, "gateway.auth.jwt.secret_file", "cannot read"),
        ({"public_key_file": "missing.pem"}, {}, "gateway.auth.jwt.public_key_file",
         "cannot read"),
    ],
)  # fmt: skip
def test_unusable_jwt_keys_are_config_errors(
    jwt_settings: dict[str, Any], environ: dict[str, str], key: str, reason: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        build({"jwt": jwt_settings}, environ)
    assert caught.value.key == key
    assert reason in caught.value.reason


def test_the_section_name_is_the_callers(tmp_path: Path) -> None:
    settings = AuthSettings.model_validate({"api_keys_file": str(tmp_path / "none.yaml")})
    with pytest.raises(ConfigError, match=r"config: gw\.a\.api_keys_file: cannot read"):
        asyncio.run(Authenticator.from_settings(settings, environ={}, where="gw.a"))


def test_the_process_environment_is_the_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLOWOPS_TEST_GW_KEYS", json.dumps([key_entry("env", CI_KEY)]))
    settings = AuthSettings(api_keys_env="FLOWOPS_TEST_GW_KEYS")
    auth = asyncio.run(Authenticator.from_settings(settings))
    assert auth.authenticate({"X-API-Key": CI_KEY}).key == "key:env"


# -- secrets stay secret ---------------------------------------------------------------------


def test_no_secret_reaches_a_repr_a_message_or_the_log(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    pem = tmp_path / "issuer.pem"
    pem.write_bytes(public_pem(rsa_key))
    settings = AuthSettings.model_validate(
        {
            "api_keys": [key_entry("ci", CI_KEY)],
            "jwt": {"algorithms": ["HS256", "RS256"], "secret_env": "S", "public_key_file": pem},
        }
    )
    auth = asyncio.run(
        Authenticator.from_settings(settings, environ={"S": SECRET}, clock=lambda: NOW)
    )
    token = jwt.encode(claims(aud=None), SECRET, algorithm="HS256")
    seen = [repr(auth), str(auth), repr(settings), repr(auth.authenticate(bearer(token)))]
    seen.append(repr(auth.authenticate({"X-API-Key": CI_KEY})))
    for headers in (bearer(token + "x"), {"X-API-Key": CI_KEY + "x"}, bearer(token + " x")):
        failure = refusal(auth, headers)
        seen += [str(failure), repr(failure), failure.reason, failure.www_authenticate or ""]
    seen.append(caplog.text)
    text = "\n".join(seen)
    assert "1 API keys" in repr(auth)  # the repr says something useful
    for secret in (CI_KEY, SECRET, token, token.split(".")[2]):
        assert secret not in text
    assert hash_api_key(CI_KEY) not in "\n".join([*seen[:2], *seen[3:]])  # settings hold it
