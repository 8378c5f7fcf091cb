"""The one settings object of o2c-monitor: environment (prefix ``O2C_``), then ``o2c.toml``, then defaults.

Built once at start-up by the ``o2c`` command and passed down; nothing else reads the environment.
Nested groups use ``__`` in variable names: ``O2C_SALESFORCE__CLIENT_SECRET``. Every field's
description is its documentation (``o2c config show`` prints them, and README lists them).
"""

from __future__ import annotations

import json
import os
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from store import ConfigError

DEFAULT_CONFIG_FILE = "o2c.toml"


class _Group(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class SalesforceSettings(_Group):
    """Salesforce (CRM): OAuth client credentials against the org's My Domain."""

    instance_url: str | None = Field(
        None, description="Org base URL, e.g. https://acme.my.salesforce.com."
    )
    client_id: str | None = Field(None, description="Connected app consumer key.")
    client_secret: SecretStr | None = Field(None, description="Connected app consumer secret.")
    api_version: str = Field("59.0", description="REST API version used in request paths.")
    verify: str | bool = Field(
        True, description="TLS verification: true, false, or a path to a CA bundle."
    )


class KantataSettings(_Group):
    """Kantata OX (PSA): a long-lived bearer token of a registered application."""

    base_url: str = Field(
        "https://api.mavenlink.com/api/v1", description="API base URL, ending in /api/v1."
    )
    token: SecretStr | None = Field(None, description="OAuth bearer token.")


class NetSuiteSettings(_Group):
    """NetSuite (ERP): REST web services with OAuth 2.0 client credentials."""

    account: str | None = Field(None, description="Account id, e.g. 1234567 or 1234567_SB1.")
    base_url: str | None = Field(
        None, description="Override of https://<account>.suitetalk.api.netsuite.com/services/rest."
    )
    client_id: str | None = Field(None, description="Integration record client id.")
    client_secret: SecretStr | None = Field(None, description="Integration client secret.")
    certificate_id: str | None = Field(None, description="Certificate id (JWT kid).")
    private_key_file: Path | None = Field(
        None,
        description="PEM file of the private key whose certificate is registered (signs the JWT).",
    )


class StripeSettings(_Group):
    """Stripe (billing and payments): a restricted secret key."""

    api_base: str = Field("https://api.stripe.com", description="API base URL.")
    api_key: SecretStr | None = Field(None, description="Secret or restricted key (sk_/rk_).")


ROLES = ("viewer", "operator", "approver")


class ConsoleSettings(_Group):
    """The Streamlit console (`o2c console`): where it listens, who the user is, how fresh it is.

    Identity: ``st.login`` (OIDC) when ``[auth]`` is configured in Streamlit's secrets.toml (its
    secrets stay there, never here); else the trusted reverse-proxy header when
    ``identity_header`` is set; else the single ``local_user`` (the demo).
    """

    address: str = Field("127.0.0.1", description="Address the console's web server binds.")
    port: int = Field(8501, ge=1, le=65535, description="Port of the console's web server.")
    identity_header: str | None = Field(
        None,
        description=(
            "Request header a trusted reverse proxy sets to the signed-in user (e.g. "
            "X-Forwarded-User); only when the proxy strips it from clients (unset: not used)."
        ),
    )
    local_user: str = Field(
        "demo", min_length=1, description="The one user when neither OIDC nor a header is set."
    )
    local_role: str = Field(
        "approver", description="Role of the local user: viewer, operator or approver."
    )
    roles: dict[str, str] = Field(
        default_factory=dict,
        description=(
            'Role per user name or e-mail, as JSON, e.g. {"ana@example.com": "operator"}. '
            "Roles: viewer (read), operator (+ acknowledge, accept, trigger), approver (+ approve)."
        ),
    )
    default_role: str = Field("viewer", description="Role of a signed-in user not listed in roles.")
    refresh_seconds: float = Field(
        60.0, ge=5, description="Pages re-read the store this often while open (fragments)."
    )
    cache_ttl_seconds: float = Field(
        30.0, ge=0, description="Store reads are cached this long, shared by all sessions."
    )
    max_rows: int = Field(
        1000, ge=10, description="Most rows a table on a page shows (CSV export has them all)."
    )
    collector_metrics_url: str | None = Field(
        "http://127.0.0.1:9464/metrics",
        description="The collector's /metrics, read for quota use and completeness (unset: none).",
    )

    @field_validator("local_role", "default_role")
    @classmethod
    def _known_role(cls, value: str) -> str:
        if value not in ROLES:
            raise ValueError(f"unknown role {value!r}; roles: {', '.join(ROLES)}")
        return value

    @field_validator("roles")
    @classmethod
    def _known_roles(cls, value: dict[str, str]) -> dict[str, str]:
        for user, role in value.items():
            if role not in ROLES:
                raise ValueError(f"{user!r}: unknown role {role!r}; roles: {', '.join(ROLES)}")
        return value


SYSTEMS = ("salesforce", "kantata", "netsuite", "stripe")


class CollectorSettings(_Group):
    """The collector: which systems are polled, how often, and how patiently."""

    systems: Annotated[list[str], NoDecode] = Field(
        list(SYSTEMS),
        description=(
            'Systems to poll, as a JSON list (e.g. ["salesforce","stripe"]) or comma-separated. '
            "Each needs its credentials set."
        ),
    )
    interval_seconds: float = Field(300.0, gt=0, description="Seconds between cycles of a stream.")
    intervals: dict[str, float] = Field(
        default_factory=dict,
        description=(
            "Per-system or per-stream intervals overriding interval_seconds, as JSON, e.g. "
            '{"salesforce": 600, "stripe.invoices": 60}.'
        ),
    )
    completeness_interval_seconds: float = Field(
        3600.0, gt=0, description="Seconds between completeness checks (source counts vs store)."
    )
    cycle_timeout_seconds: float = Field(
        900.0, gt=0, description="A cycle running longer is stopped (its written pages stay)."
    )
    request_timeout_seconds: float = Field(
        30.0, gt=0, description="Time-out of one HTTP read from a vendor (connect: 5 s)."
    )
    retries: int = Field(5, ge=1, le=20, description="Attempts per request on transient failures.")
    retry_backoff_seconds: float = Field(
        0.5, gt=0, description="First wait before a retry; doubles per attempt (with jitter)."
    )
    retry_max_backoff_seconds: float = Field(
        20.0, gt=0, description="Longest wait between attempts; also caps a Retry-After."
    )
    lookback_seconds: float = Field(
        300.0,
        ge=0,
        description="Overlap re-read below each cursor, to catch records committed late.",
    )
    misfire_grace_seconds: float = Field(
        60.0, gt=0, description="A cycle that could not start this late is skipped (coalesced)."
    )
    max_concurrent_streams: int = Field(
        2, ge=1, le=16, description="Cycles of one system that may run at the same time."
    )
    metrics_port: int = Field(
        9464,
        ge=0,
        le=65535,
        description="Port of the collector's /metrics endpoint in long-running mode (0: none).",
    )
    metrics_host: str = Field("127.0.0.1", description="Address the /metrics endpoint binds.")
    otlp_endpoint: str | None = Field(
        None,
        description="OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces (unset: no export).",
    )

    @field_validator("systems", mode="before")
    @classmethod
    def _split_systems(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                try:
                    return json.loads(text)
                except ValueError:
                    raise ValueError("not a JSON list; write e.g. salesforce,stripe") from None
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("systems")
    @classmethod
    def _known_systems(cls, value: list[str]) -> list[str]:
        unknown = [s for s in value if s not in SYSTEMS]
        if unknown:
            raise ValueError(f"unknown system {unknown[0]!r}; known: {', '.join(SYSTEMS)}")
        if not value:
            raise ValueError(f"enable at least one of {', '.join(SYSTEMS)}")
        return list(dict.fromkeys(value))

    @field_validator("intervals")
    @classmethod
    def _known_interval_keys(cls, value: dict[str, float]) -> dict[str, float]:
        for key, seconds in value.items():
            if key.split(".", 1)[0] not in SYSTEMS:
                raise ValueError(f"{key!r}: keys are <system> or <system>.<stream>")
            if seconds <= 0:
                raise ValueError(f"{key!r}: an interval must be positive")
        return value


class AlertsSettings(_Group):
    """Direct stuck-transaction alerts pushed to Alertmanager by the long-running process."""

    alertmanager_url: str | None = Field(
        None,
        description=(
            "Alertmanager base URL, e.g. http://127.0.0.1:9093 (alerts go to /api/v2/alerts); "
            "unset: no direct alerts (the Prometheus rules still fire)."
        ),
    )
    console_url: str = Field(
        "http://127.0.0.1:8501",
        description="The console's address as on-call reaches it: each alert links to its break.",
    )
    interval_seconds: float = Field(
        60.0, gt=0, description="Seconds between pushes (firing alerts are re-sent each time)."
    )

    @field_validator("alertmanager_url", "console_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("http://", "https://")):
            raise ValueError("an http:// or https:// URL")
        return value.rstrip("/") if value else value


class ReconcileSettings(_Group):
    """The reconciler: how often it runs in the long-running process, FX and business calendars."""

    interval_seconds: float = Field(
        300.0, gt=0, description="Seconds between reconcile runs in `o2c run` (after collection)."
    )
    reporting_currency: str = Field(
        "USD", description="ISO currency every amount at risk and KPI is also reported in."
    )
    fx_rates: dict[str, Decimal] = Field(
        default_factory=dict,
        description=(
            "Units of the reporting currency one unit of each currency is worth, as JSON, "
            'e.g. {"EUR": "1.08", "GBP": "1.27"}.'
        ),
    )
    weekend: list[int] = Field(
        [6, 7], description="ISO weekdays that are not business days (Mon=1), e.g. [6,7]."
    )
    holidays: dict[str, list[date]] = Field(
        default_factory=dict,
        description=(
            "Public holidays per legal entity for SLA clocks in business days, as JSON, e.g. "
            '{"US01": ["2026-12-25"], "*": ["2026-01-01"]} ("*": every entity).'
        ),
    )
    cache: bool = Field(
        True, description="Keep frames in <data_dir>/reconcile-cache to read only new rows."
    )
    legal_entity_aliases: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Legal entities as other systems name them -> the CRM's code, as JSON, e.g. "
            '{"Northwind Consulting Inc.": "US01"} (NetSuite names subsidiaries; Salesforce '
            "carries a code): one entity, one line in every breakdown."
        ),
    )

    @field_validator("reporting_currency")
    @classmethod
    def _currency(cls, value: str) -> str:
        code = value.strip().upper()
        if len(code) != 3 or not code.isalpha():
            raise ValueError("an ISO 4217 code such as USD")
        return code

    @field_validator("fx_rates")
    @classmethod
    def _positive_rates(cls, value: dict[str, Decimal]) -> dict[str, Decimal]:
        for code, rate in value.items():
            if rate <= 0:
                raise ValueError(f"the rate of {code} must be positive")
        return {code.strip().upper(): rate for code, rate in value.items()}

    @field_validator("weekend")
    @classmethod
    def _weekdays(cls, value: list[int]) -> list[int]:
        if any(day < 1 or day > 7 for day in value):
            raise ValueError("ISO weekdays are 1 (Monday) to 7 (Sunday)")
        return sorted(set(value))


class ResyncSettings(_Group):
    """Self-healing resyncs: which breaks are repaired without a person, and how hard to push.

    A break type's mode defaults to its rule's remediation (``o2c resync plan`` shows it).
    """

    modes: dict[str, str] = Field(
        default_factory=dict,
        description=(
            "Mode per break type overriding its rule's remediation, as JSON: auto, approval or "
            'manual, e.g. {"won_deal_without_project": "auto"}. Types without a repair are manual.'
        ),
    )
    approval_above_minor: int | None = Field(
        10_000_000,
        ge=0,
        description=(
            "An automatic repair with more at risk than this (reporting-currency minor units) "
            "needs approval; empty: no threshold."
        ),
    )
    rate_per_minute: int = Field(
        30, ge=1, description="Resync attempts per system per minute, over every worker."
    )
    rate_per_minute_by_system: dict[str, int] = Field(
        default_factory=dict,
        description='Per-system rates overriding rate_per_minute, as JSON, e.g. {"stripe": 10}.',
    )
    max_attempts: int = Field(
        5, ge=1, le=50, description="Attempts of one request before it fails for good."
    )
    backoff_seconds: float = Field(
        30.0, gt=0, description="Wait before a request's second attempt; doubles per attempt."
    )
    max_backoff_seconds: float = Field(
        900.0, gt=0, description="Longest wait between two attempts of a request."
    )
    circuit_failures: int = Field(
        3, ge=1, description="Consecutive failed attempts on a system that open its circuit."
    )
    circuit_cooldown_seconds: float = Field(
        120.0,
        gt=0,
        description="An open circuit blocks every write this long, then lets one probe through.",
    )
    lease_seconds: float = Field(
        300.0,
        gt=0,
        description=(
            "A claimed request (or half-open probe) not finished this long may be taken over "
            "(SQLite; on PostgreSQL a dead worker's claim is released at once)."
        ),
    )
    max_actions_per_cycle: int = Field(
        50, ge=1, description="Requests one resync cycle runs at most."
    )
    distinct_approver: bool = Field(
        True, description="Whoever asked for a resync cannot approve it (four eyes)."
    )
    interval_seconds: float = Field(
        60.0, gt=0, description="Seconds between resync cycles in `o2c run`."
    )
    enabled: bool = Field(
        True, description="Run resync cycles in `o2c run` (false: only `o2c resync run` writes)."
    )


class Settings(BaseSettings):
    """Every setting of o2c-monitor."""

    model_config = SettingsConfigDict(
        env_prefix="O2C_",
        env_nested_delimiter="__",
        extra="forbid",
        frozen=True,
    )

    data_dir: Path = Field(
        Path("data"),
        description="Local directory for the default SQLite store and demo state.",
    )
    database_url: str | None = Field(
        None,
        description=(
            "SQLAlchemy URL of the store. Default: sqlite:///<data_dir>/o2c.sqlite3. "
            "Production: postgresql+psycopg://user:password@host:5432/o2c."
        ),
    )
    log_level: str = Field("INFO", description="Log level: DEBUG, INFO, WARNING or ERROR.")
    console: ConsoleSettings = Field(default_factory=ConsoleSettings)
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)
    kantata: KantataSettings = Field(default_factory=KantataSettings)
    netsuite: NetSuiteSettings = Field(default_factory=NetSuiteSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)
    collector: CollectorSettings = Field(default_factory=CollectorSettings)
    resync: ResyncSettings = Field(default_factory=ResyncSettings)
    reconcile: ReconcileSettings = Field(default_factory=ReconcileSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)

    @field_validator("database_url")
    @classmethod
    def _valid_database_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            url = make_url(value)
        except ArgumentError:
            raise ValueError(
                "not a database URL; expected e.g. sqlite:///data/o2c.sqlite3 or "
                "postgresql+psycopg://user@host:5432/o2c"
            ) from None
        if url.get_backend_name() not in {"sqlite", "postgresql"}:
            raise ValueError(
                f"unsupported database {url.get_backend_name()!r}; use sqlite or postgresql"
            )
        return value

    @field_validator("log_level")
    @classmethod
    def _valid_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
            raise ValueError("must be DEBUG, INFO, WARNING or ERROR")
        return level

    @property
    def store_url(self) -> str:
        """The database URL in effect (the explicit one, or the SQLite file in data_dir)."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'o2c.sqlite3').as_posix()}"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = os.environ.get("O2C_CONFIG_FILE", DEFAULT_CONFIG_FILE)
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=config_file),
        )


def load_settings(**overrides: Any) -> Settings:
    """Build the settings once; a problem becomes one ConfigError line saying what to fix."""
    config_file = os.environ.get("O2C_CONFIG_FILE", DEFAULT_CONFIG_FILE)
    if "O2C_CONFIG_FILE" in os.environ and not Path(config_file).is_file():
        raise ConfigError(f"O2C_CONFIG_FILE={config_file!r}: no such file")
    _refuse_unknown_variables()
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, config_file)) from None
    except ValueError as exc:  # a malformed TOML file
        raise ConfigError(f"{config_file}: {exc}") from None


def _known_variables(model: type[BaseModel], prefix: str) -> set[str]:
    names: set[str] = set()
    for name, info in model.model_fields.items():
        variable = f"{prefix}{name.upper()}"
        names.add(variable)
        annotation = info.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            names |= _known_variables(annotation, f"{variable}__")
    return names


def _refuse_unknown_variables() -> None:
    # pydantic-settings silently ignores unknown prefixed variables; a typo would then fall back
    # to a default without a word, which is the worst outcome for credentials and URLs.
    known = _known_variables(Settings, "O2C_") | {"O2C_CONFIG_FILE"}
    unknown = sorted(
        v for v in os.environ if v.upper().startswith("O2C_") and v.upper() not in known
    )
    if unknown:
        raise ConfigError(f"unknown setting {unknown[0]}; `o2c config show` lists the known ones")


def _describe(exc: ValidationError, config_file: str) -> str:
    problems = []
    for error in exc.errors():
        path = [str(p) for p in error["loc"]]
        variable = "O2C_" + "__".join(p.upper() for p in path)
        if error["type"] == "extra_forbidden":
            problems.append(
                f"unknown setting {'.'.join(path)!r} (in {config_file} or as {variable}); "
                "`o2c config show` lists the known ones"
            )
        else:
            message = error["msg"].removeprefix("Value error, ")
            problems.append(f"{variable} (or {'.'.join(path)} in {config_file}): {message}")
    return "; ".join(problems)


def masked_url(url: str) -> str:
    """A database URL with its password replaced, for display."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable URL>"


def describe_settings(settings: Settings) -> list[tuple[str, str, str]]:
    """(variable, value with secrets masked, description) for every setting, for display."""
    rows: list[tuple[str, str, str]] = []

    def walk(model: BaseModel, prefix: str) -> None:
        for name, info in type(model).model_fields.items():
            value = getattr(model, name)
            variable = f"{prefix}{name.upper()}"
            if isinstance(value, BaseModel):
                walk(value, f"{variable}__")
                continue
            if isinstance(value, SecretStr):
                shown = "********"
            elif value is None:
                shown = "(unset)"
            elif name == "database_url":
                shown = masked_url(str(value))
            elif isinstance(value, dict | list):
                shown = json.dumps(value, default=str)
            else:
                shown = str(value)
            rows.append((variable, shown, info.description or ""))

    walk(settings, "O2C_")
    rows.append(("(effective store)", masked_url(settings.store_url), "Database in use."))
    return rows


def settings_reference() -> str:
    """Every setting as a Markdown table: variable, default, meaning (docs/settings.md)."""
    lines = [
        "# Settings",
        "",
        "Generated by `o2c config docs` from the settings model (a test keeps it current).",
        "Environment variables win over `o2c.toml` (or `O2C_CONFIG_FILE`), which wins over the",
        "defaults; in the TOML file a group is a table, e.g. `[collector]` then `interval_seconds = 60`.",
        "",
        "| variable | default | meaning |",
        "| --- | --- | --- |",
    ]

    def default_of(info: Any) -> str:
        value = info.default_factory() if info.default_factory is not None else info.default
        if value is None or value == "" or value == {} or value == []:
            return ""
        if isinstance(value, list | dict):
            return f"`{json.dumps(value, default=str)}`"
        if isinstance(value, SecretStr):
            return ""
        return f"`{value}`"

    def walk(model: type[BaseModel], prefix: str) -> None:
        for name, info in model.model_fields.items():
            variable = f"{prefix}{name.upper()}"
            annotation = info.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                doc = " ".join((annotation.__doc__ or "").split("\n\n")[0].split())
                lines.append(f"| **{variable}__\\*** | | {doc} |")
                walk(annotation, f"{variable}__")
                continue
            meaning = (info.description or "").replace("|", "\\|")
            lines.append(f"| `{variable}` | {default_of(info)} | {meaning} |")

    walk(Settings, "O2C_")
    return "\n".join(lines) + "\n"
