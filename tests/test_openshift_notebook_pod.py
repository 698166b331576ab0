"""The notebook pod the hub builds, with the configuration the templates give it, is admitted by the
notebooks' SCC and fenced by the NetworkPolicies.

The hub is configured exactly as on OpenShift: `hub_config/jupyterhub_config.py` loaded with the
environment the hub template gives the hub container. Its spawner renders alice's pod offline
(KubeSpawner `_mock=True`, a dummy kubeconfig: no Kubernetes API server can run here) from a spawn
plan with alice's Vault identity. The pod is then checked against the SCC rendered from
valeria-cluster.yaml (a small evaluator of the SCC strategies that decide admission) and against
the NetworkPolicies rendered from valeria-hub.yaml.
"""

from __future__ import annotations

import json
import os

import kubernetes_validate
import pytest
from jupyterhub.app import JupyterHub
from valeria_hub.audit import spawn_fields
from valeria_hub.kube import pod_as_dict
from valeria_hub.plan import build_plan, parse_identity, parse_s3_keys

from tests.fixtures.hub import FakeHubUser
from tests.test_openshift_templates import REPO, hub_environment, one, render

UID, GID, GROUPS = 12345, 12345, [12345, 20000]
S3_SECRET = "alice-s3-secret-" + "x" * 12


@pytest.fixture
def hub_objects() -> list[dict]:
    return render("valeria-hub.yaml", UID_MIN="10000", UID_MAX="60000")


@pytest.fixture
def configured_hub(hub_objects, monkeypatch, tmp_path) -> JupyterHub:
    return _configured(hub_objects, monkeypatch, tmp_path)


def _configured(hub_objects, monkeypatch, tmp_path, **extra_env: str) -> JupyterHub:
    """JupyterHub with the repository's config file, loaded with the template's environment."""
    env = {**hub_environment(hub_objects), **extra_env}
    for name in list(os.environ):
        if name.startswith(("VALERIA_", "JUPYTERHUB_", "JPY_")):
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    # the config file exports PGPASSWORD for libpq: registered here so that the test undoes it
    monkeypatch.setenv("PGPASSWORD", "")
    monkeypatch.chdir(tmp_path)
    app = JupyterHub()
    app.load_config_file(str(REPO / "hub_config" / "jupyterhub_config.py"))
    return app


async def render_pod(app: JupyterHub, profile: str) -> dict:
    """What KubeSpawner._start does before creating the pod, for alice with her Vault identity."""
    spawner = await prepared_spawner(app, profile)
    pod = await spawner.get_pod_manifest()
    pod = spawner.modify_pod_hook(spawner, pod)
    return pod_as_dict(pod)


async def prepared_spawner(app: JupyterHub, profile: str):
    """alice's spawner with her plan applied and ``profile`` chosen, as in KubeSpawner._start."""
    spawner_class = app.config.JupyterHub.spawner_class
    spawner = spawner_class(_mock=True, user=FakeHubUser(), config=app.config)
    settings = spawner.valeria_settings
    plan = build_plan(
        settings,
        "alice",
        parse_identity({"uid": UID, "gid": GID, "groups": GROUPS}, settings),
        parse_s3_keys({"access_key": "AKIAALICE", "secret_key": S3_SECRET}),
    )
    spawner.api_token = "hub-token-" + "y" * 12
    spawner.apply_plan(plan)
    spawner.user_options = {"profile": profile}
    await spawner.load_user_options()
    return spawner


def scc_refusals(scc: dict, pod: dict, service_account_allowed: bool) -> list[str]:
    """Why the SCC would not admit the pod ([] = admitted); the strategies OpenShift enforces."""
    problems = []
    if not service_account_allowed:
        problems.append("the pod's service account may not use the SCC")
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}

    def in_ranges(value: int, ranges: list[dict]) -> bool:
        return any(r["min"] <= value <= r["max"] for r in ranges)

    run_as = scc["runAsUser"]
    for c in spec["containers"] + spec.get("initContainers", []):
        csc = c.get("securityContext") or {}
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        if uid is None or not run_as["uidRangeMin"] <= uid <= run_as["uidRangeMax"]:
            problems.append(f"{c['name']}: runAsUser {uid} outside the SCC range")
        if csc.get("privileged") and not scc["allowPrivilegedContainer"]:
            problems.append(f"{c['name']}: privileged")
        if csc.get("allowPrivilegeEscalation", True) and not scc["allowPrivilegeEscalation"]:
            problems.append(f"{c['name']}: allowPrivilegeEscalation not false")
        added = (csc.get("capabilities") or {}).get("add") or []
        if set(added) - set(scc.get("allowedCapabilities") or []):
            problems.append(f"{c['name']}: adds capabilities {added}")
        if c.get("ports") and any(p.get("hostPort") for p in c["ports"]):
            problems.append(f"{c['name']}: hostPort")
    if "fsGroup" in psc and not in_ranges(psc["fsGroup"], scc["fsGroup"]["ranges"]):
        problems.append(f"fsGroup {psc['fsGroup']} outside the SCC ranges")
    for gid in psc.get("supplementalGroups") or []:
        if not in_ranges(gid, scc["supplementalGroups"]["ranges"]):
            problems.append(f"supplemental group {gid} outside the SCC ranges")
    for volume in spec.get("volumes") or []:
        kind = next(k for k in volume if k != "name")
        if kind not in scc["volumes"]:
            problems.append(f"volume {volume['name']} of type {kind} not allowed")
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        if spec.get(flag):
            problems.append(flag)
    seccomp = (psc.get("seccompProfile") or {}).get("type")
    if seccomp and {"RuntimeDefault": "runtime/default"}.get(seccomp) not in scc["seccompProfiles"]:
        problems.append(f"seccomp {seccomp}")
    return problems


@pytest.mark.parametrize("profile", ["scipy", "r"])
async def test_notebook_pod_is_admitted_by_the_scc_and_fenced(
    profile, kubeconfig, configured_hub, hub_objects
):
    pod = await render_pod(configured_hub, profile)
    kubernetes_validate.validate(pod, "1.29.0", strict=True)
    spec = pod["spec"]
    cluster = render("valeria-cluster.yaml", UID_MIN="10000", UID_MAX="60000")
    scc = one(cluster, "SecurityContextConstraints")
    binding = one(cluster, "RoleBinding")
    subject = binding["subjects"][0]
    sa_ok = spec.get("serviceAccountName") == subject["name"] and subject["namespace"] == "valeria"
    assert scc_refusals(scc, pod, sa_ok) == []
    # the same pod with an identity outside the range, or the default service account, is refused
    assert scc_refusals(
        scc, {**pod, "spec": {**spec, "securityContext": {**spec["securityContext"], "fsGroup": 5}}}, sa_ok
    )
    assert scc_refusals(scc, pod, service_account_allowed=False)
    # what the pod runs and mounts
    container = spec["containers"][0]
    assert container["image"].endswith(f"/valeria/valeria-notebook-{profile}:0.1.0")
    assert str(container["resources"]["limits"]["memory"]) in ("8G", "8589934592")
    assert spec["automountServiceAccountToken"] is False
    nfs = [v["nfs"] for v in spec["volumes"] if "nfs" in v]
    assert {(v["server"], v["path"]) for v in nfs} == {
        ("lustre-nfs.example.org", "/home/alice"),
        ("lustre-nfs.example.org", "/scratch/alice"),
    }
    assert S3_SECRET not in json.dumps(pod)
    # the notebooks' NetworkPolicies select this pod, on the port it listens on
    labels = pod["metadata"]["labels"]
    policies = {p["metadata"]["name"]: p for p in hub_objects if p["kind"] == "NetworkPolicy"}
    for name in ("valeria-hub-notebooks-ingress", "valeria-hub-notebooks-egress"):
        selector = policies[name]["spec"]["podSelector"]["matchLabels"]
        assert all(labels.get(k) == v for k, v in selector.items()), (
            f"{name} does not select the notebook pod"
        )
    port = next(p["containerPort"] for p in container["ports"])
    assert policies["valeria-hub-notebooks-ingress"]["spec"]["ingress"][0]["ports"][0]["port"] == port
    # and it is told to reach the hub through the Service, on the port the hub's policy opens to notebooks
    # (the mocked spawner has no real hub URL: the connect URL is what KubeSpawner hands the pod)
    assert configured_hub.config.JupyterHub.hub_connect_url == "http://valeria-hub.valeria.svc:8081"
    hub_rules = policies["valeria-hub-ingress"]["spec"]["ingress"]
    assert any(
        r["ports"][0]["port"] == 8081
        and any(
            p.get("podSelector", {}).get("matchLabels") == {"component": "singleuser-server"}
            for p in r["from"]
        )
        for r in hub_rules
    )


@pytest.mark.parametrize("profile", ["scipy", "r"])
async def test_notebook_pod_is_scraped_and_its_image_pre_pulled(profile, kubeconfig, configured_hub):
    pod = await render_pod(configured_hub, profile)
    container = pod["spec"]["containers"][0]
    monitoring = render("valeria-monitoring.yaml")
    monitor = one(monitoring, "PodMonitor")
    labels = pod["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in monitor["spec"]["selector"]["matchLabels"].items())
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    assert endpoint["port"] in {p["name"] for p in container["ports"]}
    # the target is rewritten to the metrics port the notebook images serve on
    (rewrite,) = [r for r in endpoint["relabelings"] if r["targetLabel"] == "__address__"]
    port = int(rewrite["replacement"].rsplit(":", 1)[1])
    dockerfile = (REPO / "images" / f"notebook-{profile}" / "Dockerfile").read_text()
    assert f"ENV VALERIA_METRICS_PORT={port}" in dockerfile
    policy = one(monitoring, "NetworkPolicy", "notebooks-metrics")
    assert all(labels.get(k) == v for k, v in policy["spec"]["podSelector"]["matchLabels"].items())
    assert policy["spec"]["ingress"][0]["ports"][0]["port"] == port
    # the image puller has this flavour's image on every node before the first spawn
    puller = one(render("valeria-cluster.yaml"), "DaemonSet", "image-puller")
    assert container["image"] in {c["image"] for c in puller["spec"]["template"]["spec"]["initContainers"]}


async def test_the_audit_line_of_a_kubernetes_spawn_names_identity_image_and_profile(
    kubeconfig, configured_hub
):
    spawner = await prepared_spawner(configured_hub, "r")
    fields = spawn_fields(spawner)
    assert fields == {
        "user": "alice",
        "server": "",
        "image": "image-registry.openshift-image-registry.svc:5000/valeria/valeria-notebook-r:0.1.0",
        "profile": "r",
        "uid": UID,
        "gid": GID,
        "supplemental_gids": GROUPS,
    }
    assert S3_SECRET not in json.dumps(fields)


async def test_each_flavour_requests_less_cpu_and_memory_than_its_limit(kubeconfig, configured_hub):
    """Without cpu_guarantee Kubernetes sets the CPU request equal to the limit (4 cores): a few
    users fill the nodes or the quota. Each flavour has its own requests, below its limits."""
    sizes = {}
    for profile in ("scipy", "r"):
        pod = await render_pod(configured_hub, profile)
        resources = pod["spec"]["containers"][0]["resources"]
        sizes[profile] = {
            "cpu": (str(resources["requests"]["cpu"]), str(resources["limits"]["cpu"])),
            "memory": (str(resources["requests"]["memory"]), str(resources["limits"]["memory"])),
        }
    # the template's defaults, as KubeSpawner writes them into the pod
    assert sizes["scipy"] == {"cpu": ("0.5", "4.0"), "memory": ("2147483648", "8589934592")}
    assert sizes["r"] == {"cpu": ("0.5", "4.0"), "memory": ("2147483648", "8589934592")}


async def test_flavour_sizes_are_parameters(kubeconfig, monkeypatch, tmp_path):
    objects = render(
        "valeria-hub.yaml",
        NOTEBOOK_R_CPU_REQUEST="0.25",
        NOTEBOOK_R_CPU_LIMIT="2",
        NOTEBOOK_R_MEMORY_REQUEST="512M",
        NOTEBOOK_R_MEMORY_LIMIT="4G",
    )
    app = _configured(objects, monkeypatch, tmp_path)
    resources = (await render_pod(app, "r"))["spec"]["containers"][0]["resources"]
    assert str(resources["requests"]["cpu"]) == "0.25" and str(resources["limits"]["cpu"]) == "2.0"
    assert str(resources["requests"]["memory"]) == str(512 * 1024**2)  # KubeSpawner: M = MiB
    assert str(resources["limits"]["memory"]) == str(4 * 1024**3)


@pytest.mark.parametrize("configmap", [None, "university-ca"])
async def test_hub_and_every_notebook_trust_the_same_ca_bundle(kubeconfig, monkeypatch, tmp_path, configmap):
    """A private CA (the RGW's, Vault's, a package mirror's): the admin's ConfigMap (default: the
    cluster's trusted bundle OpenShift injects) is mounted into the hub and into every notebook at
    the same path, and every TLS client is pointed at it. Profiles may not add volumes: the hub does."""
    objects = render("valeria-hub.yaml", **({"CA_BUNDLE_CONFIGMAP": configmap} if configmap else {}))
    expected_cm = configmap or "valeria-hub-trusted-ca"
    bundle = "/etc/pki/valeria/ca-bundle.crt"
    hub_spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    hub_volume = next(
        v for v in hub_spec["volumes"] if "configMap" in v and v["configMap"]["name"] == expected_cm
    )
    hub_mount = next(m for m in hub_spec["containers"][0]["volumeMounts"] if m["name"] == hub_volume["name"])
    assert hub_mount["mountPath"] == "/etc/pki/valeria"
    app = _configured(objects, monkeypatch, tmp_path)
    for profile in ("scipy", "r"):
        pod = await render_pod(app, profile)
        kubernetes_validate.validate(pod, "1.29.0", strict=True)
        spec = pod["spec"]
        volume = next(v for v in spec["volumes"] if "configMap" in v)
        assert volume["configMap"]["name"] == expected_cm
        mount = next(m for m in spec["containers"][0]["volumeMounts"] if m["name"] == volume["name"])
        assert mount["mountPath"] == "/etc/pki/valeria" and mount["readOnly"] is True
        env = {e["name"]: e.get("value") for e in spec["containers"][0]["env"]}
        for name in ("AWS_CA_BUNDLE", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE"):
            assert env[name] == bundle, name


async def test_an_extra_flavour_from_the_admins_configmap(kubeconfig, hub_objects, monkeypatch, tmp_path):
    """A flavour added without forking the template: the admin's own ConfigMap (never created nor
    reset by `oc apply`), read by the hub Deployment, merged after the template's flavours."""
    container = one(hub_objects, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    ref = next(e for e in container["env"] if e["name"] == "VALERIA_EXTRA_PROFILES")["valueFrom"][
        "configMapKeyRef"
    ]
    assert ref == {"name": "valeria-hub-extra-profiles", "key": "profiles.json", "optional": True}
    assert not [o for o in hub_objects if o["metadata"]["name"] == ref["name"]]
    gpu = {
        "slug": "gpu",
        "display_name": "GPU",
        "image": "registry.example.org/valeria/gpu-notebook:1",
        "kubespawner_override": {
            "cpu_guarantee": 2,
            "cpu_limit": 8,
            "extra_resource_limits": {"nvidia.com/gpu": "1"},
        },
    }
    app = _configured(hub_objects, monkeypatch, tmp_path, VALERIA_EXTRA_PROFILES=json.dumps([gpu]))
    assert [p["slug"] for p in app.config.ValeriaKubeSpawner.profile_list] == ["scipy", "r", "gpu"]
    pod = await render_pod(app, "gpu")
    kubernetes_validate.validate(pod, "1.29.0", strict=True)
    container = pod["spec"]["containers"][0]
    assert container["image"] == gpu["image"]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    # still alice's identity and volumes: a flavour cannot change those
    assert pod["spec"]["securityContext"]["runAsUser"] == UID
