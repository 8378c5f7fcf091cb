"""The one settings object of o2c-monitor: environment (prefix ``O2C_``), then ``o2c.toml``, then defaults.

Built once at start-up by the ``o2c`` command and passed down; nothing else reads the environment.
Nested groups use ``__`` in variable names: ``O2C_SALESFORCE__CLIENT_SECRET``. Every field's
description is its documentation (``o2c config show`` prints them, and README lists them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
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


class StripeSettings(_Group):
    """Stripe (billing and payments): a restricted secret key."""

    api_base: str = Field("https://api.stripe.com", description="API base URL.")
    api_key: SecretStr | None = Field(None, description="Secret or restricted key (sk_/rk_).")


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
    salesforce: SalesforceSettings = Field(default_factory=SalesforceSettings)
    kantata: KantataSettings = Field(default_factory=KantataSettings)
    netsuite: NetSuiteSettings = Field(default_factory=NetSuiteSettings)
    stripe: StripeSettings = Field(default_factory=StripeSettings)

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
            else:
                shown = str(value)
            rows.append((variable, shown, info.description or ""))

    walk(settings, "O2C_")
    rows.append(("(effective store)", masked_url(settings.store_url), "Database in use."))
    return rows
