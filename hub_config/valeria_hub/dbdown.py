"""A database outage answers 503 with a sentence, not a bare 500 with a traceback in the log.

JupyterHub reconnects by itself (its engine pings pooled connections before use), but while
PostgreSQL is down every request that touches the database fails with a SQLAlchemy connection error,
which JupyterHub renders as "500: Internal Server Error" (measured: a login callback during a
`pg_ctl stop`). Worse, its `prepare()` swallows the error while identifying the user, so a
logged-in user's API call answers 403 and a page redirects to the login (measured). JupyterHub has
no hook for either, so `install()` wraps two methods of its BaseHandler (API handlers included):
`prepare` (identifying the user) and `_handle_request_exception` (everything after). Connection
errors are rolled back and become a 503 carrying `jupyterhub_message`, which JupyterHub shows on its
error page and in API errors; every other error keeps JupyterHub's own handling.
"""

from __future__ import annotations

import logging

from sqlalchemy import exc as sa_exc
from tornado import web

DB_DOWN_MESSAGE = "The hub database is not reachable right now. Please try again in a few minutes."

log = logging.getLogger("valeria_hub.dbdown")


class DatabaseUnavailable(web.HTTPError):
    """503 with the fixed sentence (JupyterHub shows `jupyterhub_message`)."""

    def __init__(self) -> None:
        super().__init__(503, DB_DOWN_MESSAGE)
        self.jupyterhub_message = DB_DOWN_MESSAGE


def is_connection_error(error: BaseException) -> bool:
    """True for errors that mean "no usable connection to the database" (not a bad query)."""
    if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError):
        return True
    if isinstance(error, sa_exc.DBAPIError) and error.connection_invalidated:
        return True
    # a session whose transaction died with the connection refuses work until it is rolled back
    return isinstance(error, sa_exc.PendingRollbackError)


def install() -> None:
    """Wrap jupyterhub.handlers.base.BaseHandler once (idempotent)."""
    from jupyterhub.handlers.base import BaseHandler

    original = BaseHandler._handle_request_exception
    if getattr(original, "_valeria_db_down", False):
        return
    original_prepare = BaseHandler.prepare

    async def prepare(self) -> None:
        if not hasattr(self, "_jupyterhub_user"):
            try:
                await self.get_current_user()
            except Exception as e:
                self._jupyterhub_user = None
                if is_connection_error(e) or (isinstance(e, web.HTTPError) and e.status_code == 503):
                    # a service is down (the database, or Keycloak during a token refresh): say
                    # so; treating the request as anonymous answered 403, as if logged out (bench)
                    raise
                # JupyterHub's own handling: log, roll back, go on as an anonymous request
                self.log.exception("Failed to get current user")
                if isinstance(e, sa_exc.SQLAlchemyError):
                    self.db.rollback()
        await original_prepare(self)

    def _handle_request_exception(self, e: BaseException) -> None:
        if not is_connection_error(e):
            return original(self, e)
        log.warning(
            "%s %s: database unavailable (%s)", self.request.method, self.request.path, type(e).__name__
        )
        try:
            self.db.rollback()
        except Exception as rollback_error:  # still down: the next request rolls back again
            log.debug("rollback failed too (%s)", type(rollback_error).__name__)
        try:
            raise DatabaseUnavailable() from None
        except DatabaseUnavailable as unavailable:  # tornado reads the error from sys.exc_info()
            return original(self, unavailable)

    _handle_request_exception._valeria_db_down = True  # type: ignore[attr-defined]
    BaseHandler._handle_request_exception = _handle_request_exception
    BaseHandler.prepare = prepare
