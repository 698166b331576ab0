"""KubeSpawner offline: render the pod and the per-user Secret from a SpawnPlan, validate them
against the Kubernetes schemas, and refuse profiles that try to change the identity.

No Kubernetes API server can run here: the spawner is built with KubeSpawner's `_mock=True` and a
dummy kubeconfig pointing at a closed port; the only fake is the CoreV1 API object used to check
the Secret creation call (it records the request instead of sending it).
"""

from __future__ import annotations

import base64
import gc
import json
import warnings

import jwt
import kubernetes_validate
import pytest
from kubernetes_asyncio.client import ApiClient, Configuration, CoreV1Api
from kubernetes_asyncio.client.rest import ApiException
from valeria_hub.errors import SpawnRefused
from valeria_hub.kube import ValeriaKubeSpawner, check_pod, create_rights, make_user_secret, pod_as_dict
from valeria_hub.plan import build_plan, parse_identity, parse_s3_keys
from valeria_hub.settings import HubSettings

from tests.fixtures.hub import FakeHubUser, hub_env
from tests.fixtures.kube_api import FakeKubeAPI
from tests.test_openshift_templates import render as render_template

K8S_VERSION = "1.30"
SECRET = "alice-s3-secret-DO-NOT-LEAK"
API_TOKEN = "hub-api-token-DO-NOT-LEAK"
SETTINGS = HubSettings.from_env(
    hub_env(
        VALERIA_NFS_HOME_PATH="/export/home/{username}",
        VALERIA_NFS_SCRATCH_PATH="/export/scratch/{username}",
        VALERIA_NAMESPACE="valeria",
    )
)
PLAN = build_plan(
    SETTINGS,
    "alice",
    parse_identity({"uid": 1234, "gid": 2345, "groups": [3000, 3001]}, SETTINGS),
    parse_s3_keys({"access_key": "AKIAALICE", "secret_key": SECRET}),
)


def make_spawner(profile_list=None):
    spawner = ValeriaKubeSpawner(
        _mock=True,
        user=FakeHubUser(),
        valeria_settings=SETTINGS,
        namespace="valeria",
        profile_list=profile_list or [p.as_kubespawner() for p in SETTINGS.profiles],
    )
    spawner.api_token = API_TOKEN
    return spawner


async def render(spawner, profile: str = "scipy") -> dict:
    """What KubeSpawner._start does before creating the pod: options, manifest, modify_pod_hook."""
    spawner.apply_plan(PLAN)
    spawner.user_options = {"profile": profile}
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    pod = spawner.modify_pod_hook(spawner, pod)
    return pod_as_dict(pod)


async def test_the_pod_guard_opens_no_http_session(kubeconfig):
    """The guard serialized each pod with a new ``ApiClient()``: a TLS context and an aiohttp session
    per spawn, never closed (aiohttp says so with an 'Unclosed client session' ResourceWarning when
    the session is collected)."""
    spawner = make_spawner()
    spawner.apply_plan(PLAN)
    spawner.user_options = {"profile": "scipy"}
    await spawner.load_user_options()
    pod = await spawner.get_pod_manifest()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        for _ in range(5):
            spawner.modify_pod_hook(spawner, pod)
        gc.collect()
    assert not [w for w in seen if "Unclosed client session" in str(w.message)]


async def test_pod_runs_as_vault_identity(kubeconfig):
    spawner = make_spawner()
    pod = await render(spawner)
    spec = pod["spec"]
    container = spec["containers"][0]
    assert container["securityContext"]["runAsUser"] == 1234
    assert container["securityContext"]["runAsGroup"] == 2345
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert spec["securityContext"]["runAsUser"] == 1234
    assert spec["securityContext"]["fsGroup"] == 2345
    assert spec["securityContext"]["supplementalGroups"] == [3000, 3001]
    assert spec["automountServiceAccountToken"] is False
    assert "serviceAccountName" not in spec
    assert container["image"] == SETTINGS.profiles[0].image
    assert container["workingDir"] == "/home/alice"
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


async def test_notebook_service_account_without_token(kubeconfig):
    spawner = make_spawner()
    spawner.service_account = "valeria-notebook"
    pod = await render(spawner)
    assert pod["spec"]["serviceAccountName"] == "valeria-notebook"
    assert pod["spec"]["automountServiceAccountToken"] is False
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)


async def test_keys_only_through_secret_key_ref(kubeconfig):
    spawner = make_spawner()
    pod = await render(spawner)
    env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
    secret_name = spawner.credentials_secret_name
    assert secret_name.startswith(spawner.pod_name + "-s3-")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN"):
        assert "value" not in env[name]
        assert env[name]["valueFrom"]["secretKeyRef"] == {"name": secret_name, "key": name, "optional": False}
    assert env["AWS_ENDPOINT_URL_S3"]["value"] == "http://127.0.0.1:9"
    assert env["VALERIA_SCRATCH_DIR"]["value"] == "/scratch/alice"
    text = json.dumps(pod)
    for secret in (SECRET, API_TOKEN, base64.b64encode(SECRET.encode()).decode()):
        assert secret not in text


async def test_only_this_users_nfs_paths(kubeconfig):
    pod = await render(make_spawner())
    nfs = [(v["name"], v["nfs"]["server"], v["nfs"]["path"]) for v in pod["spec"]["volumes"] if "nfs" in v]
    assert nfs == [
        ("valeria-home", "nfs.example.org", "/export/home/alice"),
        ("valeria-scratch", "nfs.example.org", "/export/scratch/alice"),
    ]
    mounts = {m["name"]: m["mountPath"] for m in pod["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["valeria-home"] == "/home/alice" and mounts["valeria-scratch"] == "/scratch/alice"


async def test_secret_manifest_owned_by_pod(kubeconfig):
    spawner = make_spawner()
    await render(spawner)
    secret = spawner.secret_manifest("0b8f3c2e-uid")
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    assert secret["metadata"]["name"] == spawner.credentials_secret_name
    assert secret["metadata"]["namespace"] == "valeria"
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"]) == ("Pod", spawner.pod_name, "0b8f3c2e-uid")
    data = {k: base64.b64decode(v).decode() for k, v in secret["data"].items()}
    assert data == {
        "AWS_ACCESS_KEY_ID": "AKIAALICE",
        "AWS_SECRET_ACCESS_KEY": SECRET,
        "JUPYTERHUB_API_TOKEN": API_TOKEN,
        "JPY_API_TOKEN": API_TOKEN,
    }


class FakeCoreV1:
    """Stands in for the Kubernetes API (none can run here): records Secret requests."""

    def __init__(self, fail: int | None = None):
        self.created, self.fail = [], fail

    async def create_namespaced_secret(self, namespace, body):
        if self.fail:
            raise ApiException(status=self.fail, reason=f"status {self.fail}")
        self.created.append((namespace, body))


async def test_secret_created_after_pod_with_owner(kubeconfig, caplog):
    spawner = make_spawner()
    pod = await render(spawner)
    spawner.api = FakeCoreV1()
    pod["metadata"]["uid"] = "pod-uid-1"
    await spawner.after_pod_created_hook(spawner, pod)
    ((namespace, body),) = spawner.api.created
    assert namespace == "valeria" and body["metadata"]["name"] == spawner.credentials_secret_name
    assert body["metadata"]["ownerReferences"][0]["uid"] == "pod-uid-1"
    # a Secret of that name already there is not ours (names are per spawn): refuse, never replace
    for status in (403, 409):
        spawner.api = FakeCoreV1(fail=status)
        with pytest.raises(SpawnRefused):
            await spawner.create_credentials_secret(pod)
    assert SECRET not in caplog.text and base64.b64encode(SECRET.encode()).decode() not in caplog.text


# --- the Secret against an API server that enforces the Role as written and OpenShift's admission ---

KUBE_TOKEN = "hub-sa-token"


@pytest.fixture
def openshift_api(tmp_path):
    """tests/fixtures/kube_api.py with the Role rendered from openshift/templates/valeria-hub.yaml."""
    role = next(o for o in render_template("valeria-hub.yaml") if o["kind"] == "Role")
    api = FakeKubeAPI(tmp_path, role["rules"], KUBE_TOKEN)
    try:
        yield api
    finally:
        api.stop()


def core_v1_for(api: FakeKubeAPI) -> CoreV1Api:
    conf = Configuration(host=api.url)
    conf.ssl_ca_cert = str(api.ca_cert)
    conf.api_key = {"BearerToken": KUBE_TOKEN}
    conf.api_key_prefix = {"BearerToken": "Bearer"}
    return CoreV1Api(ApiClient(conf))


async def test_secret_admitted_by_openshift_with_the_templates_role(kubeconfig, openshift_api):
    spawner = make_spawner()
    pod = await render(spawner)
    pod["metadata"]["uid"] = "pod-uid-2"
    spawner.api = core_v1_for(openshift_api)
    try:
        await spawner.create_credentials_secret(pod)
        # the same Secret with blockOwnerDeletion: true is what OpenShift refuses with this Role
        blocking = spawner.secret_manifest("pod-uid-3")
        blocking["metadata"]["name"] += "-blocking"
        blocking["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] = True
        with pytest.raises(ApiException) as refused:
            await spawner.api.create_namespaced_secret("valeria", blocking)
    finally:
        await spawner.api.api_client.close()
    assert refused.value.status == 403
    (created,) = openshift_api.secrets
    assert created["metadata"]["name"] == spawner.credentials_secret_name
    assert created["metadata"]["ownerReferences"][0]["blockOwnerDeletion"] is False
    # the doctor asks for exactly the rights this manifest needs
    assert create_rights(created) == {("create", "secrets")}
    assert create_rights(blocking) == {("create", "secrets"), ("update", "pods/finalizers")}


async def test_secret_name_is_new_for_every_spawn(kubeconfig):
    """The kubelet caches immutable Secrets by name: a name reused after stop/start could serve old data."""
    names = set()
    spawner = make_spawner()
    for _ in range(3):
        spawner.begin_spawn()  # what start() does first
        pod = await render(spawner)
        env = {e["name"]: e for e in pod["spec"]["containers"][0]["env"]}
        ref = env["AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"]
        assert ref == spawner.credentials_secret_name == spawner.secret_manifest("u")["metadata"]["name"]
        names.add(ref)
    assert len(names) == 3


@pytest.mark.parametrize(
    "override",
    [
        {"uid": 0},
        {"gid": 0},
        {"fs_gid": 100},
        {"supplemental_gids": [0]},
        {"privileged": True},
        {"automount_service_account_token": True},
        {"volumes": [{"name": "all", "nfs": {"server": "nfs.example.org", "path": "/export"}}]},
        {"container_security_context": {"runAsUser": 0}},
        {"pod_security_context": {"runAsUser": 1}},
        {"environment": {"AWS_SECRET_ACCESS_KEY": SECRET}},
        # a label can make a notebook look like the hub to the NetworkPolicies
        {"extra_labels": {"hub.jupyter.org/network-access-hub": "true"}},
        {"lifecycle_hooks": {"postStart": {"exec": {"command": ["sh", "-c", "id"]}}}},
        {"working_dir": "/home/bob"},
        {"notebook_dir": "/"},
    ],
)
async def test_profile_cannot_override_identity(kubeconfig, override):
    profiles = [
        {"slug": "scipy", "display_name": "SciPy", "default": True, "kubespawner_override": {"image": "a"}},
        {"slug": "evil", "display_name": "Evil", "kubespawner_override": {"image": "b", **override}},
    ]
    spawner = make_spawner(profiles)
    with pytest.raises(SpawnRefused) as info:
        await render(spawner, "evil")
    assert info.value.reason == "identity-override"
    assert SECRET not in str(info.value)
    # the same spawner with the honest profile renders fine
    await render(make_spawner(profiles), "scipy")


async def test_profile_replacing_the_hook_is_still_checked(kubeconfig):
    profiles = [
        {
            "slug": "sneaky",
            "display_name": "Sneaky",
            "default": True,
            # KubeSpawner calls callables in overrides with the spawner: this one returns a no-op hook
            "kubespawner_override": {"uid": 0, "modify_pod_hook": lambda spawner: lambda s, pod: pod},
        }
    ]
    spawner = make_spawner(profiles)
    pod = await render(spawner, "sneaky")  # the replaced hook lets it through...
    assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] == 0
    spawner.api = FakeCoreV1()
    with pytest.raises(SpawnRefused):  # ...but the pod is checked again right before creation
        await spawner._make_create_pod_request(await spawner.get_pod_manifest(), 5)


def test_check_pod_refuses_plain_secret_and_foreign_nfs():
    secret = make_user_secret("s", "ns", PLAN.secret_env)
    kubernetes_validate.validate(secret, K8S_VERSION, strict=True)
    base = {
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsUser": 1234,
                "runAsGroup": 2345,
                "fsGroup": 2345,
                "supplementalGroups": [3000, 3001],
            },
            "containers": [{"name": "notebook", "securityContext": {"runAsUser": 1234, "runAsGroup": 2345}}],
        }
    }
    check_pod(base, PLAN, "s")
    leaky = json.loads(json.dumps(base))
    leaky["spec"]["containers"][0]["env"] = [{"name": "X", "value": SECRET}]
    with pytest.raises(SpawnRefused):
        check_pod(leaky, PLAN, "s")
    foreign = json.loads(json.dumps(base))
    foreign["spec"]["volumes"] = [
        {"name": "v", "nfs": {"server": "nfs.example.org", "path": "/export/home/bob"}}
    ]
    with pytest.raises(SpawnRefused):
        check_pod(foreign, PLAN, "s")


@pytest.mark.parametrize("missing", ["runAsUser", "runAsGroup"])
def test_check_pod_requires_the_plans_user_and_group(missing):
    """Without runAsUser/runAsGroup the image's USER decides who the notebook runs as."""
    pod = {
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 2345,
                                "supplementalGroups": [3000, 3001]},
            "containers": [{"name": "notebook"}],
        }
    }  # fmt: skip
    check_pod(pod, PLAN, "s")
    del pod["spec"]["securityContext"][missing]
    with pytest.raises(SpawnRefused) as info:
        check_pod(pod, PLAN, "s")
    assert "runAsUser/runAsGroup" in str(info.value)


def test_check_pod_allows_only_the_expected_labels():
    expected = {"component": "singleuser-server", "hub.jupyter.org/username": "alice"}
    pod = {
        "metadata": {"labels": dict(expected)},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {"runAsUser": 1234, "runAsGroup": 2345, "fsGroup": 2345,
                                "supplementalGroups": [3000, 3001]},
        },
    }  # fmt: skip
    check_pod(pod, PLAN, "s", labels=expected)
    pod["metadata"]["labels"]["app.kubernetes.io/component"] = "hub"
    with pytest.raises(SpawnRefused) as info:
        check_pod(pod, PLAN, "s", labels=expected)
    assert "pod labels" in str(info.value)


# --- the same spawner, with its plan from the real OpenBao and a real user token -----------------


class RecordingCoreV1(FakeCoreV1):
    """Stands in for the Kubernetes API: records every pod creation (none may happen on refusal)."""

    def __init__(self):
        super().__init__()
        self.pods = []

    async def create_namespaced_pod(self, namespace, body):
        self.pods.append(body)


def vault_spawner(openbao, tokens, **settings_env):
    settings = HubSettings.from_env(
        hub_env(VALERIA_VAULT_ADDR=openbao.addr, VALERIA_VAULT_RETRIES="0", **settings_env)
    )

    class User(FakeHubUser):
        async def get_auth_state(self):
            claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
            return {
                "access_token": tokens["access_token"],
                "oauth_user": {"preferred_username": "alice", "sub": claims["sub"]},
            }

    spawner = ValeriaKubeSpawner(
        _mock=True,
        user=User(),
        valeria_settings=settings,
        namespace="valeria",
        profile_list=[p.as_kubespawner() for p in settings.profiles],
    )
    spawner.api_token = API_TOKEN
    spawner.api = RecordingCoreV1()
    return spawner


@pytest.mark.hub
async def test_pod_from_real_vault_plan(kubeconfig, openbao, oidc_provider):
    from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_SECRET, VAULT_USERS

    tokens = oidc_provider.login("alice", "jupyterhub", OIDC_CLIENT_SECRET, HUB_CALLBACK)
    spawner = vault_spawner(openbao, tokens)
    uid, gid, groups, access, secret = VAULT_USERS["alice"]
    spawner.apply_plan(await spawner.make_plan())
    await spawner.load_user_options()
    pod = pod_as_dict(spawner.modify_pod_hook(spawner, await spawner.get_pod_manifest()))
    kubernetes_validate.validate(pod, K8S_VERSION, strict=True)
    assert pod["spec"]["containers"][0]["securityContext"]["runAsUser"] == uid
    assert pod["spec"]["securityContext"]["supplementalGroups"] == groups
    assert secret not in json.dumps(pod) and tokens["access_token"] not in json.dumps(pod)


@pytest.mark.hub
async def test_refused_plan_creates_nothing(kubeconfig, openbao, oidc_provider):
    from tests.fixtures.services import HUB_CALLBACK, OIDC_CLIENT_SECRET

    tokens = oidc_provider.login("alice", "jupyterhub", OIDC_CLIENT_SECRET, HUB_CALLBACK)
    spawner = vault_spawner(openbao, tokens, VALERIA_VAULT_IDENTITY_PATH="valeria/users/{sub}/absent")
    with pytest.raises(SpawnRefused) as info:
        await spawner.start()
    assert info.value.reason == "missing"
    assert spawner.api.pods == [] and spawner.api.created == []
    assert spawner.plan is None
