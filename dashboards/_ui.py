"""Streamlit plumbing shared by the pages: the config, the Store, the signed-in user, cached reads.

Nothing here decides anything about the business: it wires Streamlit to the service layer
(``dashboards.service``), caches its reads for ``cache_ttl_seconds`` (shared by every session,
keyed by the user, so a result computed for one role is never served to another) and turns a
refused action into a message.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

import streamlit as st

import store
from dashboards import service
from dashboards.service import ConsoleConfig, User
from reconciler.resync import ResyncPolicy

T = TypeVar("T")

_CONFIG: dict[str, ConsoleConfig] = {}


def configure(config: ConsoleConfig) -> None:
    """Set the console's config for this process (the entry script does, on every run)."""
    _CONFIG["config"] = config


def config() -> ConsoleConfig:
    try:
        return _CONFIG["config"]
    except KeyError:
        raise RuntimeError("the console is not configured: start it with `o2c console`") from None


@st.cache_resource(show_spinner=False)
def _store(url: str) -> store.Store:
    return store.Store(url)


def db() -> store.Store:
    """The process's Store (one engine and pool shared by every session)."""
    return _store(config().store_url)


def _oidc_configured() -> bool:
    try:
        return "auth" in st.secrets
    except Exception:  # no secrets.toml at all: OIDC is simply not configured
        return False


def current_user() -> User | None:
    """The session's user, or None after telling them how to sign in (the caller stops)."""
    cfg = config()
    oidc = _oidc_configured()
    claims: Mapping[str, object] | None = None
    if oidc:
        claims = {key: st.user.get(key) for key in ("email", "preferred_username", "name", "sub")}
        claims = {**claims, "is_logged_in": bool(st.user.is_logged_in)}
    headers = dict(st.context.headers.items()) if cfg.identity_header else {}
    user = service.resolve_user(cfg, oidc_configured=oidc, oidc_claims=claims, headers=headers)
    if user is None:
        if oidc:
            st.title("o2c-monitor")
            st.write("Sign in to use the console.")
            st.button("Sign in", on_click=st.login, type="primary")
        else:
            st.error(
                f"No user: the trusted proxy header {cfg.identity_header} is missing. "
                "Reach the console through its reverse proxy."
            )
    return user


@functools.cache
def _cache(ttl: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    # The resync policy holds read-only mappings, which Streamlit's hasher cannot copy; its repr
    # (a frozen dataclass) names every value.
    return st.cache_data(
        ttl=ttl, max_entries=256, show_spinner=False, hash_funcs={ResyncPolicy: repr}
    )


def cached(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Call a service read through the shared cache (key: the function and its arguments).

    The Store is named by its URL (the cached call opens it), the user is part of the key.
    """
    ttl = config().cache_ttl_seconds
    name = (function.__module__, function.__qualname__)
    result: T = _cache(ttl)(_call)(*name, config().store_url, *args, **kwargs)
    return result


@functools.cache
def _shared_cache(ttl: float) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    return st.cache_resource(ttl=ttl, max_entries=16, show_spinner=False)


def shared(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Like ``cached``, but every session gets the same object instead of a copy.

    For large frames (the break register): polars frames are never changed in place, so
    sharing one is safe, and it spares unpickling a copy on every run.
    """
    ttl = config().cache_ttl_seconds
    name = (function.__module__, function.__qualname__)
    result: T = _shared_cache(ttl)(_call)(*name, config().store_url, *args, **kwargs)
    return result


def _call(module: str, name: str, url: str, *args: Any, **kwargs: Any) -> Any:
    import importlib

    target: Any = importlib.import_module(module)
    for part in name.split("."):
        target = getattr(target, part)
    return target(_store(url), *args, **kwargs)


def refresh() -> None:
    """Forget cached reads (after an action changed the store)."""
    st.cache_data.clear()
    for cache in (_shared_cache(t) for t in {config().cache_ttl_seconds}):
        cache(_call).clear()  # type: ignore[attr-defined]


def act(action: Callable[[], T], done: str) -> T | None:
    """Run a service action; a refusal or a bad input becomes an error message, not a crash."""
    try:
        result = action()
    except service.PermissionDenied as exc:
        st.error(f"Not allowed: {exc}")
        return None
    except (ValueError, store.O2CError) as exc:
        st.error(str(exc))
        return None
    refresh()
    st.session_state["o2c_flash"] = done
    return result


def flash() -> None:
    """Show (once) the message the last action left."""
    message = st.session_state.pop("o2c_flash", None)
    if message:
        st.success(message)


def header(title: str, user: User, caption: str | None = None) -> None:
    st.title(title)
    if caption:
        st.caption(caption)
    flash()
