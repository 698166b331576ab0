"""The one exception a refused spawn raises: a message a researcher understands, and nothing secret."""

from __future__ import annotations

from tornado import web


class SpawnRefused(web.HTTPError):
    """The spawn must not start. `str(e)` and `jupyterhub_message` are shown to the user.

    A tornado HTTPError, so JupyterHub answers with its status (403 by default, 503 when a service
    is down) instead of a bare 500. `reason` is a short machine-readable tag (for logs and tests);
    the message never carries a token, key or password, and callers never chain the original
    exception into user-facing text.
    """

    def __init__(self, message: str, reason: str = "refused", status_code: int = 403) -> None:
        # log_message is %-formatted by tornado: escape, so a '%' in a message cannot break it
        super().__init__(status_code, message.replace("%", "%%"))
        self.message = message
        self.reason = reason
        # JupyterHub shows this attribute on the spawn-pending page and in API errors.
        self.jupyterhub_message = message

    def __str__(self) -> str:
        return self.message


class VaultError(SpawnRefused):
    """Vault could not be reached, refused us, or did not hold what the spawn needs."""


class PlanError(SpawnRefused):
    """Vault answered, but the values cannot make a safe spawn (uid 0, out of range, malformed...)."""
