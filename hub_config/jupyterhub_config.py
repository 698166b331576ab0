# Valeria JupyterHub configuration: the same file for OpenShift and the local platform.
#
# Every value comes from the environment, parsed and validated once by valeria_hub.settings
# (the table is docs/environment.md). This file only wires settings to classes.
import os
import sys

from valeria_hub.settings import HubSettings, SettingsError

try:
    settings = HubSettings.from_env(os.environ)
except SettingsError as error:
    # fail loudly, before JupyterHub starts anything; the message names the variable, never a secret
    sys.exit(f"Valeria hub configuration error: {error}")

c = get_config()  # noqa: F821 (provided by JupyterHub when it loads this file)

# --- login: Keycloak through oauthenticator -------------------------------------------------------
from valeria_hub.auth import KeycloakAuthenticator  # noqa: E402

c.JupyterHub.authenticator_class = KeycloakAuthenticator
c.KeycloakAuthenticator.realm_url = settings.oidc_realm_url
c.KeycloakAuthenticator.ca_bundle = settings.oidc_ca_bundle or ""
c.KeycloakAuthenticator.client_id = settings.oidc_client_id
c.KeycloakAuthenticator.client_secret = settings.oidc_client_secret.get()
c.KeycloakAuthenticator.oauth_callback_url = settings.oauth_callback_url
c.KeycloakAuthenticator.post_logout_redirect_url = settings.hub_public_url + "/hub/login"
c.KeycloakAuthenticator.scope = list(settings.oidc_scopes)
c.KeycloakAuthenticator.enable_pkce = True
c.KeycloakAuthenticator.manage_groups = True
c.KeycloakAuthenticator.auth_state_groups_key = "oauth_user.groups"
c.KeycloakAuthenticator.allowed_groups = set(settings.oidc_allowed_groups)
c.KeycloakAuthenticator.enable_auth_state = True
c.KeycloakAuthenticator.refresh_pre_spawn = True
c.KeycloakAuthenticator.auth_refresh_age = settings.auth_refresh_age
c.KeycloakAuthenticator.refresh_margin = settings.token_refresh_margin
c.KeycloakAuthenticator.refresh_jitter = settings.token_refresh_jitter

# hub admins: the role valeria-admin for VALERIA_OIDC_ADMIN_GROUPS, not JupyterHub's admin flag,
# whose built-in role holds admin:auth_state (every user's tokens)
from valeria_hub.roles import admin_role  # noqa: E402

c.JupyterHub.load_roles = [admin_role(settings.oidc_admin_groups)] if settings.oidc_admin_groups else []
c.KeycloakAuthenticator.hub_admin_groups = set(settings.oidc_admin_groups)

# --- hub, proxy, database -------------------------------------------------------------------------
c.JupyterHub.bind_url = settings.proxy_bind_url
c.JupyterHub.hub_bind_url = settings.hub_bind_url
if settings.hub_connect_url:
    c.JupyterHub.hub_connect_url = settings.hub_connect_url
c.ConfigurableHTTPProxy.api_url = settings.proxy_api_url
c.ConfigurableHTTPProxy.should_start = settings.proxy_should_start
c.JupyterHub.db_url = settings.db_url
# A hub restart (upgrade, rollout, crash) must not stop the users' servers: the new hub re-adopts
# them from the database (KubeSpawner by pod name, the local spawner by pid and start time).
c.JupyterHub.cleanup_servers = False
# PostgreSQL down or restarting: a clear 503 instead of a bare 500; the engine reconnects by itself
import valeria_hub.dbdown  # noqa: E402

valeria_hub.dbdown.install()
os.environ.update(settings.db_environment())  # PGPASSWORD: the password stays out of the URL

# --- spawner: the Vault-driven spawn plan ---------------------------------------------------------
c.Spawner.start_timeout = settings.start_timeout  # a first pull of a multi-GB image takes minutes
c.Spawner.http_timeout = settings.http_timeout
c.JupyterHub.concurrent_spawn_limit = settings.concurrent_spawn_limit  # docs/operations.md: a lecture

# --- the idle culler: a hub-managed service with only the scopes it needs ---------------------------
c.JupyterHub.services = []
if settings.cull_idle_timeout:
    c.JupyterHub.services.append(
        {
            "name": "idle-culler",
            "command": [
                sys.executable,
                "-m",
                "jupyterhub_idle_culler",
                f"--timeout={settings.cull_idle_timeout}",
                f"--cull-every={settings.cull_every}",
                f"--max-age={settings.cull_max_age}",
            ],
        }
    )
    c.JupyterHub.load_roles.append(
        {
            "name": "idle-culler",
            "services": ["idle-culler"],
            "scopes": ["list:users", "read:users:activity", "read:servers", "delete:servers"],
        }
    )
if settings.spawner == "kubernetes":
    from valeria_hub.kube import ValeriaKubeSpawner

    c.JupyterHub.spawner_class = ValeriaKubeSpawner
    c.ValeriaKubeSpawner.valeria_settings = settings
    c.ValeriaKubeSpawner.profile_list = [profile.as_kubespawner() for profile in settings.profiles]
    if settings.namespace:
        c.ValeriaKubeSpawner.namespace = settings.namespace
    if settings.notebook_service_account:
        # the account the notebook SCC is granted to; its API token is still not mounted
        c.ValeriaKubeSpawner.service_account = settings.notebook_service_account
else:
    from valeria_hub.local import LocalDatalakeSpawner

    c.JupyterHub.spawner_class = LocalDatalakeSpawner
    c.LocalDatalakeSpawner.valeria_settings = settings

# --- seeing it: audit log on stdout, metrics at /hub/metrics (docs/operations.md) ---------------
from valeria_hub.audit import audit_logger, log_request  # noqa: E402

audit_logger()
c.JupyterHub.tornado_settings.update({"log_function": log_request})
if settings.metrics_token:
    # Prometheus scrapes /hub/metrics with this service's token: read:metrics and nothing else.
    c.JupyterHub.service_tokens.update({settings.metrics_token.get(): "metrics"})
    c.JupyterHub.services.append({"name": "metrics"})
    c.JupyterHub.load_roles.append({"name": "metrics", "scopes": ["read:metrics"], "services": ["metrics"]})
