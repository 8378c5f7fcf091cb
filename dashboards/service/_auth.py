"""Who is using the console and what they may do: roles checked here, not only by hiding buttons.

Roles are ordered: a viewer reads; an operator also acknowledges, accepts and triggers resyncs;
an approver also approves resyncs. Every action of the service layer calls ``require`` first, so a
page that forgot to hide a button still cannot act for someone who may not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import IntEnum

from dashboards.service._config import ConsoleConfig
from store import O2CError


class Role(IntEnum):
    """A console role; a higher role may do everything a lower one may."""

    VIEWER = 1
    OPERATOR = 2
    APPROVER = 3

    @classmethod
    def named(cls, name: str) -> Role:
        try:
            return cls[name.upper()]
        except KeyError:
            raise ValueError(f"unknown role {name!r}; roles: viewer, operator, approver") from None

    @property
    def label(self) -> str:
        return self.name.lower()


ACTIONS: Mapping[str, Role] = {
    "read": Role.VIEWER,
    "acknowledge": Role.OPERATOR,
    "accept": Role.OPERATOR,
    "trigger": Role.OPERATOR,
    "approve": Role.APPROVER,
}
"""The least role each action needs."""


class PermissionDenied(O2CError):
    """A user tried an action their role does not allow."""

    def __init__(self, user: User, action: str) -> None:
        needed = ACTIONS[action].label
        super().__init__(
            f"{user.name} ({user.role.label}) may not {action}: it needs the {needed} role"
        )
        self.user = user.name
        self.action = action


@dataclass(frozen=True)
class User:
    """The person acting, where their identity came from (oidc, header or local), and their role."""

    name: str
    role: Role
    source: str

    def can(self, action: str) -> bool:
        if action not in ACTIONS:
            raise ValueError(f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
        return self.role >= ACTIONS[action]


def require(user: User, action: str) -> None:
    """Raise PermissionDenied unless the user's role allows the action."""
    if not user.can(action):
        raise PermissionDenied(user, action)


def role_of(config: ConsoleConfig, name: str) -> Role:
    """A signed-in user's role: the one listed for them in the settings, else the default role."""
    listed = config.roles.get(name)
    if listed is None:
        listed = next((r for u, r in config.roles.items() if u.lower() == name.lower()), None)
    return Role.named(listed or config.default_role)


def resolve_user(
    config: ConsoleConfig,
    *,
    oidc_configured: bool,
    oidc_claims: Mapping[str, object] | None,
    headers: Mapping[str, str],
) -> User | None:
    """The user of a session, or None when they must still sign in (or the proxy sent no name).

    OIDC (``st.login``) when configured: the e-mail claim, else the name, else the subject. Else
    the trusted reverse-proxy header when configured. Else the single local user (the demo).
    """
    if oidc_configured:
        if not oidc_claims or not oidc_claims.get("is_logged_in"):
            return None
        for claim in ("email", "preferred_username", "name", "sub"):
            value = oidc_claims.get(claim)
            if isinstance(value, str) and value.strip():
                name = value.strip()
                return User(name, role_of(config, name), "oidc")
        return None
    if config.identity_header:
        wanted = config.identity_header.lower()
        value = next((v for k, v in headers.items() if k.lower() == wanted), None)
        if value is None or not value.strip():
            return None
        name = value.strip()
        return User(name, role_of(config, name), "header")
    return User(config.local_user, Role.named(config.local_role), "local")
