"""The hub admins' role, `valeria-admin`: JupyterHub's admin rights without `admin:auth_state`.

JupyterHub's default `admin` role holds `admin:users`, whose subscopes include `admin:auth_state`:
every hub admin could read every user's access, refresh and ID tokens (measured: bob, admin, got
alice's tokens from `GET /hub/api/users/alice`), and those tokens work outside the hub (a Vault
login as alice). This role keeps what the admin panel needs (list users and groups, start, stop
and open servers, tokens, the proxy) and drops reading auth state; `delete:users` stays, creating
users is not needed (users come from Keycloak).

JupyterHub refuses to redefine its `admin` role, so the hub never sets the admin flag (see
KeycloakAuthenticator.update_auth_model) and gives this role to the admin groups instead; `admin-ui`
opens the admin panel.
"""

from __future__ import annotations

#: JupyterHub 5/6's default admin scopes, with `admin:users` replaced by its subscopes minus
#: `admin:auth_state`
ADMIN_SCOPES = (
    "admin-ui",
    "users",
    "read:roles:users",
    "delete:users",
    "admin:servers",
    "admin:services",
    "tokens",
    "admin:groups",
    "list:services",
    "read:services",
    "read:hub",
    "proxy",
    "shutdown",
    "access:services",
    "access:servers",
    "read:roles",
    "read:metrics",
    "shares",
)


ADMIN_ROLE = "valeria-admin"


def admin_role(groups: tuple[str, ...] | list[str]) -> dict:
    """The `load_roles` entry giving the admin groups (full Keycloak paths) the admin scopes."""
    return {
        "name": ADMIN_ROLE,
        "description": "Hub administrators: users, servers and groups, but not users' tokens",
        "scopes": list(ADMIN_SCOPES),
        "groups": list(groups),
    }
