"""The one exception a refused spawn raises: a message a researcher understands, and nothing secret."""

from __future__ import annotations


class SpawnRefused(Exception):
    """The spawn must not start. `str(e)` and `jupyterhub_message` are shown to the user.

    `reason` is a short machine-readable tag (for logs and tests); the message never carries a
    token, key or password, and callers never chain the original exception into user-facing text.
    """

    def __init__(self, message: str, reason: str = "refused") -> None:
        super().__init__(message)
        self.reason = reason
        # JupyterHub shows this attribute on the spawn-pending page and in API errors.
        self.jupyterhub_message = message


class VaultError(SpawnRefused):
    """Vault could not be reached, refused us, or did not hold what the spawn needs."""


class PlanError(SpawnRefused):
    """Vault answered, but the values cannot make a safe spawn (uid 0, out of range, malformed...)."""
