"""Identity and roles of the console: where the user comes from, and what each role may do."""

from __future__ import annotations

import pytest

from dashboards.service import (
    ConsoleConfig,
    PermissionDenied,
    Role,
    User,
    require,
    resolve_user,
)

CONFIG = ConsoleConfig(
    store_url="sqlite://",
    roles={"ana@example.com": "approver", "otto": "operator"},
    local_user="demo",
    local_role="operator",
)


@pytest.mark.parametrize(
    ("role", "allowed"),
    [
        (Role.VIEWER, {"read"}),
        (Role.OPERATOR, {"read", "acknowledge", "accept", "trigger"}),
        (Role.APPROVER, {"read", "acknowledge", "accept", "trigger", "approve"}),
    ],
)
def test_each_role_may_do_its_actions_and_those_below_it(role: Role, allowed: set[str]) -> None:
    user = User("someone", role, "local")
    for action in ("read", "acknowledge", "accept", "trigger", "approve"):
        assert user.can(action) is (action in allowed)
        if action in allowed:
            require(user, action)
        else:
            with pytest.raises(PermissionDenied, match=f"may not {action}"):
                require(user, action)


def test_a_refusal_names_the_user_the_action_and_the_role_it_needs() -> None:
    with pytest.raises(PermissionDenied) as refused:
        require(User("vera", Role.VIEWER, "header"), "trigger")
    assert str(refused.value) == "vera (viewer) may not trigger: it needs the operator role"
    assert (refused.value.user, refused.value.action) == ("vera", "trigger")


def test_without_oidc_or_a_header_the_user_is_the_local_one_from_the_settings() -> None:
    user = resolve_user(CONFIG, oidc_configured=False, oidc_claims=None, headers={})
    assert user == User("demo", Role.OPERATOR, "local")


def test_a_trusted_header_names_the_user_whose_role_comes_from_the_settings() -> None:
    config = ConsoleConfig(store_url="sqlite://", identity_header="X-Forwarded-User",
                           roles={"otto": "operator"})  # fmt: skip
    headers = {"x-forwarded-user": "otto", "host": "console"}
    assert resolve_user(config, oidc_configured=False, oidc_claims=None, headers=headers) == User(
        "otto", Role.OPERATOR, "header"
    )
    stranger = {"X-Forwarded-User": "mallory"}
    assert resolve_user(config, oidc_configured=False, oidc_claims=None, headers=stranger) == User(
        "mallory", Role.VIEWER, "header"
    )


def test_with_a_header_configured_but_absent_there_is_no_user_not_the_local_one() -> None:
    config = ConsoleConfig(store_url="sqlite://", identity_header="X-Forwarded-User")
    assert resolve_user(config, oidc_configured=False, oidc_claims=None, headers={}) is None


def test_oidc_comes_first_and_needs_a_signed_in_user() -> None:
    headers = {"X-Forwarded-User": "otto"}
    signed_out = {"is_logged_in": False}
    assert (
        resolve_user(CONFIG, oidc_configured=True, oidc_claims=signed_out, headers=headers) is None
    )
    claims = {"is_logged_in": True, "email": "Ana@Example.com", "name": "Ana"}
    user = resolve_user(CONFIG, oidc_configured=True, oidc_claims=claims, headers=headers)
    assert user == User("Ana@Example.com", Role.APPROVER, "oidc")


def test_an_unknown_role_in_the_settings_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown role 'admin'"):
        Role.named("admin")
