"""Kubernetes side of a SpawnPlan: pure manifest builders, a pod guard, and the KubeSpawner subclass.

The builders (like KubeSpawner's own objects.py) take plain values and return plain dicts, so they
are tested by calling them. `ValeriaKubeSpawner` runs the pipeline before KubeSpawner's start,
applies the plan, re-checks the final pod in `modify_pod_hook` (KubeSpawner applies profile
overrides inside `_start()`, after every pre-spawn hook, so only the final pod can be trusted), and
creates the per-user Secret owned by the pod once the pod has a uid.

The Secret is named per spawn (`<pod>-s3-<random>`): the kubelet caches `immutable` Secrets by
name, so a name reused after a quick stop/start could hand the new pod the previous spawn's data.
Its owner reference has `blockOwnerDeletion: false`: OpenShift's OwnerReferencesPermissionEnforcement
admission refuses `true` unless the creator may update `pods/finalizers`, a right the hub does not
need (the garbage collector deletes the Secret with the pod either way, so the hub needs no `delete`
on Secrets either).
"""

from __future__ import annotations

import asyncio
import base64
import posixpath
import secrets
from collections.abc import Mapping
from typing import Any

from kubernetes_asyncio.client import ApiClient
from kubernetes_asyncio.client.rest import ApiException
from kubespawner import KubeSpawner
from traitlets import Unicode, default

from .errors import SpawnRefused
from .plan import SpawnPlan
from .s3env import SECRET_NAMES
from .spawnbase import PlannedSpawnerMixin
from .stages import SpawnStages

#: Env names of hub-issued tokens that also go through the per-user Secret instead of plain env.
HUB_TOKEN_NAMES = ("JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN")

_REFUSED = "The notebook configuration tried to change who your server runs as; the server was not started."


class _PodSerializer(ApiClient):
    """Only ``sanitize_for_serialization``: no REST client, so no HTTP session to open or leak.

    ``ApiClient()`` opens an aiohttp session on every construction; the guard needs none of it.
    """

    def __init__(self) -> None:  # deliberately not calling ApiClient.__init__
        pass


_SERIALIZER = _PodSerializer()


def pod_as_dict(pod: Any) -> dict[str, Any]:
    """A pod (a kubernetes_asyncio model or already a dict) as the JSON the API server receives."""
    return pod if isinstance(pod, dict) else _SERIALIZER.sanitize_for_serialization(pod)


def secret_name_for(pod_name: str, suffix: str) -> str:
    """The per-spawn Secret name: never reused, so no kubelet cache of an immutable Secret can match."""
    return f"{pod_name}-s3-{suffix}"


def new_secret_suffix() -> str:
    return secrets.token_hex(4)


def create_rights(manifest: Mapping[str, Any]) -> set[tuple[str, str]]:
    """(verb, resource) the API server checks when the hub creates this object.

    RBAC asks `create` on the kind; OwnerReferencesPermissionEnforcement (on in OpenShift) also asks
    `update` on `<owner kind>/finalizers` for every owner reference with `blockOwnerDeletion: true`.
    The doctor checks exactly these rights, for exactly the manifest the hub sends.
    """
    needs = {("create", manifest["kind"].lower() + "s")}
    for ref in manifest.get("metadata", {}).get("ownerReferences") or []:
        if ref.get("blockOwnerDeletion"):
            needs.add(("update", ref["kind"].lower() + "s/finalizers"))
    return needs


def secret_env(names: list[str] | tuple[str, ...], secret_name: str) -> dict[str, dict]:
    """KubeSpawner `environment` entries that read each name from the Secret (`secretKeyRef`)."""
    return {
        name: {"valueFrom": {"secretKeyRef": {"name": secret_name, "key": name, "optional": False}}}
        for name in names
    }


def plan_volumes(plan: SpawnPlan) -> tuple[list[dict], list[dict]]:
    """Volumes and mounts: exactly this user's NFS home and scratch paths, and the platform's CA bundle."""
    volumes = [
        {"name": f"valeria-{v.name}", "nfs": {"server": v.server, "path": v.export_path, "readOnly": False}}
        for v in plan.volumes
    ]
    mounts = [{"name": f"valeria-{v.name}", "mountPath": v.mount_path} for v in plan.volumes]
    if plan.ca_bundle:
        # the platform's CA bundle: a profile may not add volumes, so the hub mounts it itself
        configmap, path = plan.ca_bundle
        folder, filename = posixpath.split(path)
        volumes.append(
            {
                "name": "valeria-ca",
                "configMap": {"name": configmap, "items": [{"key": "ca-bundle.crt", "path": filename}]},
            }
        )
        mounts.append({"name": "valeria-ca", "mountPath": folder, "readOnly": True})
    return volumes, mounts


def pod_overrides(plan: SpawnPlan, secret_name: str) -> dict[str, Any]:
    """KubeSpawner trait values that make the pod run as the plan says."""
    volumes, mounts = plan_volumes(plan)
    environment: dict[str, Any] = dict(plan.public_env)
    environment["HOME"] = plan.home_dir
    environment.update(secret_env(sorted(plan.secret_env), secret_name))
    return {
        "uid": plan.uid,
        "gid": plan.gid,
        "fs_gid": plan.gid,
        "supplemental_gids": list(plan.supplemental_gids),
        "privileged": False,
        "allow_privilege_escalation": False,
        "container_security_context": {
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "pod_security_context": {
            "runAsUser": plan.uid,
            "runAsGroup": plan.gid,
            "runAsNonRoot": True,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "automount_service_account_token": False,
        "environment": environment,
        "volumes": volumes,
        "volume_mounts": mounts,
        "working_dir": plan.home_dir,
        "notebook_dir": plan.home_dir,
    }


def make_user_secret(
    name: str,
    namespace: str | None,
    data: Mapping[str, str],
    owner_pod: tuple[str, str] | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The per-user Secret (S3 keys, hub token); owned by the pod so Kubernetes deletes it with it."""
    metadata: dict[str, Any] = {
        "name": name,
        "labels": {"app.kubernetes.io/component": "singleuser-credentials", **(labels or {})},
    }
    if namespace:
        metadata["namespace"] = namespace
    if owner_pod:
        pod_name, pod_uid = owner_pod
        metadata["ownerReferences"] = [
            {
                "apiVersion": "v1",
                "kind": "Pod",
                "name": pod_name,
                "uid": pod_uid,
                "blockOwnerDeletion": False,
                "controller": False,
            }
        ]
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "immutable": True,
        "metadata": metadata,
        "data": {k: base64.b64encode(v.encode()).decode() for k, v in sorted(data.items())},
    }


def check_pod(
    pod: Mapping[str, Any],
    plan: SpawnPlan,
    secret_name: str,
    labels: Mapping[str, str] | None = None,
) -> None:
    """Refuse a pod (a plain dict) that does not run exactly as the plan says, or leaks a secret.

    `labels`, when given, are the only labels the pod may carry: the NetworkPolicies select the hub
    and the notebooks by label, so an extra label could make a notebook look like the hub.
    """
    spec = pod.get("spec") or {}
    problems = []
    psc = spec.get("securityContext") or {}
    # both required at pod level: without them the image's USER (possibly root) decides
    if psc.get("runAsUser") != plan.uid or psc.get("runAsGroup") != plan.gid:
        problems.append("pod runAsUser/runAsGroup")
    if labels is not None and dict((pod.get("metadata") or {}).get("labels") or {}) != dict(labels):
        problems.append("pod labels")
    if psc.get("fsGroup") != plan.gid:
        problems.append("fsGroup")
    if sorted(psc.get("supplementalGroups") or []) != sorted(plan.supplemental_gids):
        problems.append("supplementalGroups")
    if spec.get("automountServiceAccountToken") is not False:
        problems.append("automountServiceAccountToken")
    if spec.get("hostPID") or spec.get("hostIPC") or spec.get("hostNetwork"):
        problems.append("host namespaces")
    ours = {(v.server, v.export_path) for v in plan.volumes}
    for volume in spec.get("volumes") or []:
        if "hostPath" in volume:
            problems.append(f"hostPath volume {volume.get('name')}")
        nfs = volume.get("nfs")
        if nfs and (nfs.get("server"), nfs.get("path")) not in ours:
            problems.append(f"NFS volume {volume.get('name')}")
        secret = volume.get("secret")
        if secret and secret.get("secretName") == secret_name:
            problems.append("credentials Secret mounted as a volume")
    secret_values = set(plan.secret_values())
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        csc = container.get("securityContext") or {}
        if csc.get("runAsUser", plan.uid) != plan.uid or csc.get("runAsGroup", plan.gid) != plan.gid:
            problems.append(f"container {container.get('name')} runAsUser/runAsGroup")
        if csc.get("privileged") or csc.get("allowPrivilegeEscalation"):
            problems.append(f"container {container.get('name')} privileges")
        if container.get("lifecycle"):
            problems.append(f"container {container.get('name')} lifecycle hooks")
        if container.get("workingDir") not in (None, plan.home_dir):
            problems.append(f"container {container.get('name')} workingDir")
        for env in container.get("env") or []:
            if env.get("name") == "JUPYTERHUB_ROOT_DIR" and env.get("value") != plan.home_dir:
                problems.append("notebook root directory")
            if env.get("value") is not None and env["value"] in secret_values:
                problems.append(f"plain value of {env.get('name')}")
            if env.get("name") in SECRET_NAMES:
                ref = (env.get("valueFrom") or {}).get("secretKeyRef") or {}
                if ref.get("name") != secret_name or ref.get("key") != env["name"]:
                    problems.append(f"{env.get('name')} not from the credentials Secret")
    if problems:
        raise SpawnRefused(
            _REFUSED + " (" + "; ".join(sorted(set(problems))) + ")", reason="identity-override"
        )


class ValeriaKubeSpawner(PlannedSpawnerMixin, KubeSpawner):
    """KubeSpawner that runs the Vault pipeline first and starts only a pod matching the plan."""

    credentials_secret_name = Unicode(help="Name of the per-user Secret (pod name + a per-spawn suffix).")

    _secret_data: dict[str, str] | None = None

    @default("credentials_secret_name")
    def _credentials_secret_name_default(self):
        return secret_name_for(self.pod_name, new_secret_suffix())

    @default("modify_pod_hook")
    def _modify_pod_hook_default(self):
        return lambda spawner, pod: spawner.guard_pod(pod)

    def apply_plan(self, plan: SpawnPlan) -> None:
        """Set the identity traits from the plan; the guard re-checks them on the final pod."""
        self.plan = plan
        for trait, value in pod_overrides(plan, self.credentials_secret_name).items():
            setattr(self, trait, value)

    def get_env(self):
        env = super().get_env()
        # the hub's API token is a credential too: it travels in the same Secret
        hub_tokens = {name: env.pop(name) for name in HUB_TOKEN_NAMES if isinstance(env.get(name), str)}
        env.update(secret_env(sorted(hub_tokens), self.credentials_secret_name))
        if self.plan is not None:
            self._secret_data = {**self.plan.secret_env, **hub_tokens}
        return env

    def guard_pod(self, pod):
        """modify_pod_hook: the pod KubeSpawner is about to create must match the plan."""
        if self.plan is None:
            raise SpawnRefused("No spawn plan: the server was not started.", reason="no-plan")
        as_dict = pod_as_dict(pod)
        # the labels KubeSpawner builds without any extra_labels (profiles may not set them)
        check_pod(as_dict, self.plan, self.credentials_secret_name, labels=self._build_pod_labels({}))
        return pod

    def secret_manifest(self, pod_uid: str | None) -> dict[str, Any]:
        if self._secret_data is None:
            raise SpawnRefused("No credentials were prepared: the server was not started.", reason="no-plan")
        return make_user_secret(
            self.credentials_secret_name,
            self.namespace,
            self._secret_data,
            owner_pod=(self.pod_name, pod_uid) if pod_uid else None,
            labels=self._build_common_labels({}),
        )

    @default("after_pod_created_hook")
    def _after_pod_created_hook_default(self):
        return lambda spawner, pod: spawner.create_credentials_secret(pod)

    async def create_credentials_secret(self, pod) -> None:
        """Create the Secret owned by the pod (the container waits for it: secretKeyRef is not optional)."""
        uid = pod["metadata"]["uid"] if isinstance(pod, dict) else pod.metadata.uid
        body = self.secret_manifest(uid)
        # Not KubeSpawner's _make_create_resource_request: it logs the whole manifest on failure.
        try:
            await asyncio.wait_for(
                self.api.create_namespaced_secret(self.namespace, body), self.k8s_api_request_timeout
            )
        except ApiException as e:
            # 409 too: the name is new for every spawn, so an existing one is not ours to replace
            self.log.error("Creating Secret %s failed with status %s", self.credentials_secret_name, e.status)
            raise SpawnRefused("Your credentials could not be handed to the server.", "secret") from None
        self.log.info("Created Secret %s owned by pod %s", self.credentials_secret_name, self.pod_name)

    async def _make_create_pod_request(self, pod, request_timeout):
        # Second check at the last moment: a profile that replaced modify_pod_hook cannot skip it.
        self.guard_pod(pod)
        return await super()._make_create_pod_request(pod, request_timeout)

    def begin_spawn(self) -> None:
        """Forget the previous spawn: no plan, no credentials, and a Secret name never used before."""
        self.plan = None
        self._secret_data = None
        self.credentials_secret_name = secret_name_for(self.pod_name, new_secret_suffix())

    async def start(self):
        stages = SpawnStages()
        try:
            self.begin_spawn()
            plan = await self.make_plan(stages)
            self.apply_plan(plan)
            with stages.stage("start"):
                return await super().start()
        finally:
            stages.report(self.user.name, self.log)


__all__ = [
    "ValeriaKubeSpawner",
    "check_pod",
    "create_rights",
    "make_user_secret",
    "plan_volumes",
    "pod_overrides",
    "secret_env",
    "secret_name_for",
]
