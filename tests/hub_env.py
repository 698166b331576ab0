"""A complete, valid hub environment for tests (every value fake and loopback)."""

from __future__ import annotations

BASE_ENV = {
    "JUPYTERHUB_CRYPT_KEY": "0" * 64,
    "VALERIA_OIDC_REALM_URL": "http://127.0.0.1:9/realms/valeria",
    "VALERIA_OIDC_CLIENT_ID": "jupyterhub",
    "VALERIA_OIDC_CLIENT_SECRET": "client-secret-DO-NOT-LEAK",
    "VALERIA_OIDC_ALLOWED_GROUPS": "researchers",
    "VALERIA_OIDC_ADMIN_GROUPS": "hub-admins",
    "VALERIA_VAULT_ADDR": "http://127.0.0.1:9",
    "VALERIA_S3_ENDPOINT": "http://127.0.0.1:9",
    "VALERIA_NFS_SERVER": "nfs.example.org",
    "VALERIA_DB_PASSWORD": "db-password-DO-NOT-LEAK",
}


def hub_env(**overrides: str | None) -> dict[str, str]:
    env = dict(BASE_ENV)
    for key, value in overrides.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env
