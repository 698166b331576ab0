# The baseline of bench/hub_load.py: plain JupyterHub with the same proxy (configurable-http-proxy),
# database (PostgreSQL) and local-process spawner as ours, but DummyAuthenticator and no spawn
# pipeline (no Keycloak, no Vault). Each notebook server gets the same S3 environment our plan
# gives, read from a file the bench writes, so the notebook side does the same work.
import json
import os

from jupyterhub.spawner import LocalProcessSpawner
from valeria_hub.local import DistinctPortMixin
from valeria_hub.s3env import s3_public_environment, s3_secret_environment

c = get_config()  # noqa: F821

c.JupyterHub.authenticator_class = "dummy"
c.DummyAuthenticator.password = os.environ["PLAIN_PASSWORD"]
c.Authenticator.allow_all = True
c.JupyterHub.bind_url = os.environ["PLAIN_PUBLIC_URL"]
c.JupyterHub.hub_bind_url = os.environ["PLAIN_HUB_BIND_URL"]
c.ConfigurableHTTPProxy.api_url = os.environ["PLAIN_PROXY_API_URL"]
c.JupyterHub.db_url = os.environ["PLAIN_DB_URL"]
c.JupyterHub.cleanup_servers = False

with open(os.environ["PLAIN_KEYS_FILE"]) as f:
    KEYS = json.load(f)  # username -> [access key, secret key]
ROOT = os.environ["PLAIN_USERS_ROOT"]
S3 = s3_public_environment(os.environ["PLAIN_S3_ENDPOINT"], "us-east-1", None, ())


class PlainLocalSpawner(DistinctPortMixin, LocalProcessSpawner):
    """LocalProcessSpawner without the uid switch (the users do not exist on this machine)."""

    def make_preexec_fn(self, name):
        return None

    def user_env(self, env):
        env["USER"] = self.user.name
        env["HOME"] = self.notebook_dir
        return env

    def get_env(self):
        env = super().get_env()
        env.update(S3)
        env.update(s3_secret_environment(*KEYS[self.user.name]))
        return env

    def get_args(self):
        args = super().get_args()
        if os.geteuid() == 0:
            args.append("--ServerApp.allow_root=True")
        return args

    async def start(self):
        home = os.path.join(ROOT, self.user.name)
        os.makedirs(home, mode=0o700, exist_ok=True)
        self.notebook_dir = home
        return await super().start()


c.JupyterHub.spawner_class = PlainLocalSpawner
