"""The OpenShift templates in openshift/templates/, rendered and validated without a cluster.

Each template is rendered the way `oc process` does (openshift/tools/ocprocess.py: `${PARAM}`,
`${{PARAM}}`, required and generated parameters), then every object is validated: Kubernetes kinds
against the Kubernetes JSON schemas (kubernetes-validate, strict, for the oldest supported
OpenShift's Kubernetes and the newest), OpenShift kinds against the field schema in
openshift/tools/openshift_schema.py. Then the properties the platform relies on are checked
object by object: Recreate, the Role's verbs, edge TLS, the SCC's range and binding, the network
policies' reachability (a small evaluator below), secrets by reference only, and the hub config
loading with exactly the environment the template gives the hub.
"""

from __future__ import annotations

import importlib.util
import ipaddress
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from tests.fixtures.hub import worktree_path

REPO = Path(__file__).resolve().parent.parent
TEMPLATES = REPO / "openshift" / "templates"
TOOLS = REPO / "openshift" / "tools"
#: OpenShift 4.16 (the oldest we support) runs Kubernetes 1.29; also the newest schemas we have.
KUBE_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())


def _load_tool(name: str):
    spec = importlib.util.spec_from_file_location(f"valeria_openshift_{name}", TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


ocprocess = _load_tool("ocprocess")
schema = _load_tool("openshift_schema")

#: what an admin passes (the required parameters; everything else keeps its default)
PARAMS = {
    "valeria-hub.yaml": {
        "NAMESPACE": "valeria",
        "HUB_HOST": "jupyter.apps.example.org",
        "IMAGE_PREFIX": "image-registry.openshift-image-registry.svc:5000/valeria",
        "OIDC_REALM_URL": "https://sso.example.org/realms/valeria",
        "OIDC_ALLOWED_GROUPS": "/researchers",
        "OIDC_ADMIN_GROUPS": "/hub-admins",
        "DB_HOST": "postgres.example.org",
        "VAULT_ADDR": "https://vault.example.org:8200",
        "S3_ENDPOINT": "https://rgw.example.org",
        "S3_SHARED_BUCKETS": "climate-shared",
        "NFS_SERVER": "lustre-nfs.example.org",
    },
    "valeria-cluster.yaml": {"NAMESPACE": "valeria"},
    "valeria-builds.yaml": {"GIT_URI": "https://git.example.org/valeria/valeria-jupyterhub.git"},
    "valeria-monitoring.yaml": {"NAMESPACE": "valeria"},
    "valeria-backup.yaml": {"DB_HOST": "postgres.example.org"},
}
TEMPLATE_FILES = sorted(TEMPLATES.glob("*.yaml"))


def render(name: str, **extra: str) -> list[dict]:
    return ocprocess.process(ocprocess.load(TEMPLATES / name), {**PARAMS[name], **extra})


def objects_of(objects: list[dict], kind: str) -> list[dict]:
    return [o for o in objects if o["kind"] == kind]


def one(objects: list[dict], kind: str, name_part: str = "") -> dict:
    found = [o for o in objects_of(objects, kind) if name_part in o["metadata"]["name"]]
    assert len(found) == 1, (
        f"expected one {kind} named *{name_part}*, got {[o['metadata']['name'] for o in found]}"
    )
    return found[0]


@pytest.fixture(scope="module")
def hub() -> list[dict]:
    return render("valeria-hub.yaml")


# ------------------------------------------------------------------------------------------------
# the renderer itself behaves like oc process


MINI = {
    "apiVersion": "template.openshift.io/v1",
    "kind": "Template",
    "metadata": {"name": "mini"},
    "labels": {"app": "${NAME}"},
    "parameters": [
        {"name": "NAME", "required": True},
        {"name": "REPLICAS", "value": "2"},
        {"name": "ENABLED", "value": "true"},
        {"name": "TOKEN", "generate": "expression", "from": "[a-f0-9]{20}"},
        {"name": "EMPTY"},
    ],
    "objects": [
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "${NAME}-cm", "labels": {"x": "y"}},
            "data": {
                "n": "${REPLICAS}",
                "t": "${TOKEN}",
                "e": "${EMPTY}",
                "both": "${NAME}/${NAME}",
                "json": '{"a": {"n": ${REPLICAS}}}',  # a `}` right after a reference stays text
            },
        },
        {"kind": "X", "metadata": {"name": "x"}, "spec": {"replicas": "${{REPLICAS}}", "on": "${{ENABLED}}"}},
    ],
}


def test_renderer_substitutes_like_oc_process() -> None:
    cm, x = ocprocess.process(MINI, {"NAME": "demo"})
    assert cm["metadata"]["name"] == "demo-cm"
    assert cm["metadata"]["labels"] == {"app": "demo", "x": "y"}  # template labels added
    assert cm["data"]["n"] == "2" and cm["data"]["both"] == "demo/demo" and cm["data"]["e"] == ""
    assert cm["data"]["json"] == '{"a": {"n": 2}}'
    assert re.fullmatch(r"[a-f0-9]{20}", cm["data"]["t"])
    assert x["spec"] == {"replicas": 2, "on": True}  # ${{}} keeps JSON types
    again, _ = ocprocess.process(MINI, {"NAME": "demo"})
    assert again["data"]["t"] != cm["data"]["t"]  # generated per processing


@pytest.mark.parametrize(
    "params, message",
    [
        ({}, "NAME is required"),
        ({"NAME": "a", "NOPE": "1"}, "unknown parameter"),
        ({"NAME": "a", "REPLICAS": "two"}, "needs a JSON value"),
    ],
)
def test_renderer_refuses_what_oc_refuses(params: dict, message: str) -> None:
    with pytest.raises(ocprocess.TemplateError, match=message):
        ocprocess.process(MINI, params)


def test_renderer_catches_typos_oc_would_keep() -> None:
    broken = {**MINI, "objects": [{"kind": "X", "metadata": {"name": "${NAMEE}"}}]}
    with pytest.raises(ocprocess.TemplateError, match="names no parameter"):
        ocprocess.process(broken, {"NAME": "a"})


def test_renderer_cli_param_file(tmp_path: Path) -> None:
    env = tmp_path / "valeria.env"
    env.write_text(
        "# admin's parameters\n" + "\n".join(f"{k}={v}" for k, v in PARAMS["valeria-hub.yaml"].items())
    )
    out = subprocess.run(
        [
            sys.executable,
            str(TOOLS / "ocprocess.py"),
            "-f",
            str(TEMPLATES / "valeria-hub.yaml"),
            "--param-file",
            env,
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert yaml.safe_load(out.stdout)["kind"] == "List"
    missing = subprocess.run(
        [sys.executable, str(TOOLS / "ocprocess.py"), "-f", str(TEMPLATES / "valeria-hub.yaml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert missing.returncode == 1 and "required" in missing.stderr


def test_openshift_schema_catches_mistakes() -> None:
    route = {
        "apiVersion": "route.openshift.io/v1",
        "kind": "Route",
        "metadata": {"name": "r"},
        "spec": {"to": {"kind": "Service", "name": "s"}, "tls": {"terminaton": "edge"}},
    }
    errors = schema.validate(route)
    assert any("unknown field 'terminaton'" in e for e in errors)
    assert any("missing required field 'termination'" in e for e in errors)
    route["spec"]["tls"] = {"termination": "edge", "insecureEdgeTerminationPolicy": "redirect"}
    assert any("'redirect' is not one of" in e for e in schema.validate(route))


# ------------------------------------------------------------------------------------------------
# every template: lint, render, validate


def test_every_template_has_test_parameters() -> None:
    assert {p.name for p in TEMPLATE_FILES} == set(PARAMS)


def test_yamllint_clean() -> None:
    yamllint = Path(sys.executable).with_name("yamllint")
    result = subprocess.run(
        [str(yamllint), "-s", "-c", str(REPO / "openshift" / ".yamllint"), str(REPO / "openshift")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", TEMPLATE_FILES, ids=lambda p: p.name)
def test_template_renders_and_every_object_validates(path: Path) -> None:
    template = ocprocess.load(path)
    assert schema.validate(template) == []
    params = template["parameters"]
    for p in params:
        assert (
            p.get("description")
            or p["name"] in ("DB_PORT", "DB_NAME", "DB_USER", "OIDC_CLIENT_ID")
            or (p["name"].startswith(("HUB_CPU", "HUB_MEMORY", "S3_REGION", "VAULT_")))
        ), f"parameter {p['name']} has no description"
    objects = ocprocess.process(template, PARAMS[path.name])
    assert objects
    text = json.dumps(objects)
    assert "${" not in text, "an unsubstituted parameter reference"
    for obj in objects:
        where = f"{path.name}: {obj['kind']} {obj['metadata'].get('name')}"
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "valeria", where
        if schema.is_openshift(obj):
            assert schema.validate(obj) == [], where
        else:
            for version in KUBE_VERSIONS:
                try:
                    kubernetes_validate.validate(obj, version, strict=True)
                except kubernetes_validate.ValidationError as e:
                    pytest.fail(f"{where} (Kubernetes {version}): {e.message}")
    names = [(o["kind"], o["metadata"]["name"]) for o in objects]
    assert len(names) == len(set(names)), "duplicate objects"


def test_no_secret_values_in_templates() -> None:
    """Secrets are admin-created and referenced by name: no Secret objects, no secret parameters."""
    for path in TEMPLATE_FILES:
        template = ocprocess.load(path)
        assert not [o for o in template["objects"] if o["kind"] == "Secret"], path.name
        for p in template["parameters"]:
            if re.search(r"PASSWORD|SECRET$|CRYPT|TOKEN|KEY$", p["name"]) and not p["name"].endswith("_NAME"):
                # HUB_SECRET, DB_SECRET...: names of admin-created Secrets, never values
                if not re.fullmatch(r"(HUB|DB|OIDC|VAULT|METRICS)_SECRET", p["name"]):
                    pytest.fail(f"{path.name}: parameter {p['name']} looks like a secret value")
            assert p.get("generate") is None, (
                f"{path.name}: {p['name']} generates a value (a secret in the template)"
            )


def test_hub_env_secrets_only_by_reference(hub: list[dict]) -> None:
    deployment = one(hub, "Deployment")
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    secret_refs = {}
    for env in container["env"]:
        assert "value" not in env, f"{env['name']} is a plain value in the pod spec"
        if env["name"] == "VALERIA_EXTRA_PROFILES":  # the admin's own ConfigMap, not a secret
            continue
        ref = env["valueFrom"]["secretKeyRef"]
        secret_refs[env["name"]] = (ref["name"], ref["key"])
    assert set(secret_refs) >= {
        "JUPYTERHUB_CRYPT_KEY",
        "JPY_COOKIE_SECRET",
        "VALERIA_DB_PASSWORD",
        "VALERIA_OIDC_CLIENT_SECRET",
    }
    cm = one(hub, "ConfigMap", "-env")
    for key in cm["data"]:
        assert not re.search(r"SECRET|PASSWORD|CRYPT_KEY|TOKEN", key), f"{key} in a ConfigMap"
    assert "@" not in cm["data"]["VALERIA_DB_URL"].split("//")[1].split("@")[0] + ":"  # no user:password@


# ------------------------------------------------------------------------------------------------
# the hub


def test_hub_deployment_never_runs_two_hubs(hub: list[dict]) -> None:
    deployment = one(hub, "Deployment")
    assert deployment["spec"]["strategy"] == {"type": "Recreate"}
    assert deployment["spec"]["replicas"] == 1
    spec = deployment["spec"]["template"]["spec"]
    assert spec["serviceAccountName"] == "valeria-hub"
    container = spec["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert "runAsUser" not in container["securityContext"]  # restricted SCC picks an arbitrary uid
    assert spec["securityContext"]["runAsNonRoot"] is True
    triggers = json.loads(deployment["metadata"]["annotations"]["image.openshift.io/triggers"])
    assert triggers[0]["from"]["name"] == "valeria-hub:0.1.0"
    assert container["image"].endswith("/valeria/valeria-hub:0.1.0")


def test_hub_route_is_edge_tls_with_redirect(hub: list[dict]) -> None:
    route = one(hub, "Route")
    assert route["spec"]["host"] == "jupyter.apps.example.org"
    assert route["spec"]["tls"] == {"termination": "edge", "insecureEdgeTerminationPolicy": "Redirect"}
    service = one(hub, "Service")
    assert route["spec"]["to"]["name"] == service["metadata"]["name"]
    assert route["spec"]["port"]["targetPort"] in [p["name"] for p in service["spec"]["ports"]]
    deployment = one(hub, "Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert all(labels.get(k) == v for k, v in service["spec"]["selector"].items())


def test_hub_role_grants_only_what_kubespawner_needs(hub: list[dict]) -> None:
    role = one(hub, "Role")
    granted = {}
    for rule in role["rules"]:
        assert rule["apiGroups"] == [""], "only core resources"
        assert "*" not in rule["resources"] and "*" not in rule["verbs"]
        for resource in rule["resources"]:
            granted.setdefault(resource, set()).update(rule["verbs"])
    assert granted == {
        "pods": {"get", "list", "watch", "create", "delete"},
        "events": {"get", "list", "watch"},
        # the per-user Secret; never read, list or delete the project's (the GC deletes ours)
        "secrets": {"create"},
    }
    for binding in objects_of(hub, "RoleBinding"):
        assert binding["roleRef"]["name"] not in ("edit", "admin", "cluster-admin")
    binding = one(hub, "RoleBinding", "spawner")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": role["metadata"]["name"],
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "valeria-hub", "namespace": "valeria"}]
    assert not objects_of(hub, "ClusterRole") and not objects_of(hub, "ClusterRoleBinding")


def test_notebook_service_account_has_no_token(hub: list[dict]) -> None:
    sa = one(hub, "ServiceAccount", "notebook")
    assert sa["automountServiceAccountToken"] is False


# ------------------------------------------------------------------------------------------------
# network policies: a small evaluator of Kubernetes NetworkPolicy semantics


HUB_POD = {
    "labels": {"app.kubernetes.io/name": "valeria-hub", "app.kubernetes.io/component": "hub"},
    "ip": "10.128.0.5",
}
ALICE = {
    "labels": {"component": "singleuser-server", "app": "jupyterhub", "hub.jupyter.org/username": "alice"},
    "ip": "10.128.2.7",
}
BOB = {
    "labels": {"component": "singleuser-server", "app": "jupyterhub", "hub.jupyter.org/username": "bob"},
    "ip": "10.129.1.9",
}
ROUTER_NS = {
    "policy-group.network.openshift.io/ingress": "",
    "kubernetes.io/metadata.name": "openshift-ingress",
}
DNS_NS = {"kubernetes.io/metadata.name": "openshift-dns"}
OWN_NS = {"kubernetes.io/metadata.name": "valeria"}


def _selects(selector: dict, labels: dict) -> bool:
    assert set(selector) <= {"matchLabels"}, "the evaluator knows matchLabels only"
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def _peer_matches(peer: dict, other: dict) -> bool:
    """other: {"labels", "ns" (namespace labels), "ip"}."""
    if "ipBlock" in peer:
        ip = ipaddress.ip_address(other["ip"])
        block = peer["ipBlock"]
        return ip in ipaddress.ip_network(block["cidr"]) and not any(
            ip in ipaddress.ip_network(e) for e in block.get("except", [])
        )
    ns_ok = (
        _selects(peer["namespaceSelector"], other["ns"])
        if "namespaceSelector" in peer
        else other["ns"] == OWN_NS
    )
    pod_ok = _selects(peer["podSelector"], other.get("labels", {})) if "podSelector" in peer else True
    return ns_ok and pod_ok


def _port_matches(ports: list[dict] | None, port: int, protocol: str) -> bool:
    return not ports or any(p["port"] == port and p.get("protocol", "TCP") == protocol for p in ports)


def _allowed(policies: list[dict], pod: dict, direction: str, other: dict, port: int, protocol: str) -> bool:
    key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
    selecting = [
        p
        for p in policies
        if direction in p["spec"]["policyTypes"] and _selects(p["spec"]["podSelector"], pod["labels"])
    ]
    if not selecting:
        return True  # not isolated
    for policy in selecting:
        for rule in policy["spec"].get(key, []):
            peers = rule.get(peers_key)
            if (not peers or any(_peer_matches(peer, other) for peer in peers)) and _port_matches(
                rule.get("ports"), port, protocol
            ):
                return True
    return False


def connects(policies: list[dict], src: dict, dst: dict, port: int, protocol: str = "TCP") -> bool:
    """Both sides' policies must allow: src's egress and dst's ingress."""
    src_ns, dst_ns = src.get("ns", OWN_NS), dst.get("ns", OWN_NS)
    egress = (
        _allowed(policies, {**src, "ns": src_ns}, "Egress", {**dst, "ns": dst_ns}, port, protocol)
        if src_ns == OWN_NS
        else True
    )
    ingress = (
        _allowed(policies, {**dst, "ns": dst_ns}, "Ingress", {**src, "ns": src_ns}, port, protocol)
        if dst_ns == OWN_NS
        else True
    )
    return egress and ingress


def test_network_policies(hub: list[dict]) -> None:
    policies = objects_of(hub, "NetworkPolicy")
    outside = lambda ip: {"labels": {}, "ns": {"external": "yes"}, "ip": ip}  # noqa: E731
    router = {
        "labels": {"ingresscontroller.operator.openshift.io/deployment-ingresscontroller": "default"},
        "ns": ROUTER_NS,
        "ip": "10.131.0.2",
    }
    dns = {
        "labels": {"dns.operator.openshift.io/daemonset-dns": "default"},
        "ns": DNS_NS,
        "ip": "10.130.0.10",
    }
    # notebooks reach the hub's API, DNS and S3 / the internet
    assert connects(policies, ALICE, HUB_POD, 8081)
    assert connects(policies, ALICE, dns, 5353, "UDP")
    assert connects(policies, ALICE, outside("192.0.2.10"), 443)  # the RGW endpoint
    assert connects(policies, ALICE, outside("198.51.100.7"), 7480)
    # ... but not the cloud metadata address, other users' notebooks, or the hub's other ports
    assert not connects(policies, ALICE, outside("169.254.169.254"), 80)
    assert not connects(policies, ALICE, BOB, 8888)
    assert not connects(policies, BOB, ALICE, 8888)
    assert not connects(policies, ALICE, HUB_POD, 8001)  # the proxy's API
    assert not connects(policies, ALICE, HUB_POD, 8000)
    assert not connects(policies, ALICE, {"labels": {"app": "postgres"}, "ip": "10.128.5.5"}, 5432)
    # nor the nodes' network (API server, kubelets) with OpenShift's default machine network
    assert not connects(policies, ALICE, outside("10.0.0.5"), 6443)
    assert not connects(policies, ALICE, outside("10.0.12.7"), 10250)
    # the hub's proxy reaches the notebooks, and the hub's own API through the Service (hairpin)
    assert connects(policies, HUB_POD, ALICE, 8888)
    assert connects(policies, HUB_POD, HUB_POD, 8081)
    # the router reaches the hub's public port only
    assert connects(policies, router, HUB_POD, 8000)
    assert not connects(policies, router, HUB_POD, 8081)
    assert not connects(policies, router, ALICE, 8888)


def test_notebook_egress_deny_and_s3_allow() -> None:
    """NOTEBOOK_EGRESS_DENY (a JSON list of CIDRs) fences off the external database and Vault too,
    and S3_EGRESS_CIDR lets the S3 endpoint through even inside a denied range."""
    deny = ["169.254.0.0/16", "10.128.0.0/14", "172.30.0.0/16", "10.0.0.0/16"]
    deny += ["192.0.2.20/32", "192.0.2.30/32"]  # the external PostgreSQL and Vault
    hub = render("valeria-hub.yaml", NOTEBOOK_EGRESS_DENY=json.dumps(deny), S3_EGRESS_CIDR="10.0.3.9/32",
                 S3_EGRESS_PORT="7480")  # fmt: skip
    for policy in objects_of(hub, "NetworkPolicy"):
        kubernetes_validate.validate(policy, KUBE_VERSIONS[0], strict=True)
    policies = objects_of(hub, "NetworkPolicy")
    outside = lambda ip: {"labels": {}, "ns": {"external": "yes"}, "ip": ip}  # noqa: E731
    assert not connects(policies, ALICE, outside("192.0.2.20"), 5432)  # PostgreSQL
    assert not connects(policies, ALICE, outside("192.0.2.30"), 8200)  # Vault
    assert connects(policies, ALICE, outside("192.0.2.99"), 443)  # the rest of the world
    assert connects(policies, ALICE, outside("10.0.3.9"), 7480)  # the RGW on the node network...
    assert not connects(policies, ALICE, outside("10.0.3.9"), 22)  # ...on its port only
    assert not connects(policies, ALICE, outside("10.0.3.8"), 7480)
    # by default the S3 rule matches nothing
    default = objects_of(render("valeria-hub.yaml"), "NetworkPolicy")
    assert not connects(default, ALICE, outside("10.0.3.9"), 443)


def test_notebook_egress_deny_must_be_a_json_list() -> None:
    with pytest.raises(ocprocess.TemplateError):
        render("valeria-hub.yaml", NOTEBOOK_EGRESS_DENY="10.0.0.0/16, 192.0.2.20/32")


# ------------------------------------------------------------------------------------------------
# the SCC


def test_notebook_scc_allows_the_uid_range_only_for_the_notebook_service_account() -> None:
    objects = render("valeria-cluster.yaml", UID_MIN="10000", UID_MAX="65000")
    scc = one(objects, "SecurityContextConstraints")
    assert scc["runAsUser"] == {"type": "MustRunAsRange", "uidRangeMin": 10000, "uidRangeMax": 65000}
    assert scc["fsGroup"]["ranges"] == [{"min": 10000, "max": 65000}]
    assert scc["supplementalGroups"]["ranges"] == [{"min": 10000, "max": 65000}]
    assert scc["users"] == [] and scc["groups"] == []  # granted through RBAC `use` only
    assert scc["allowPrivilegedContainer"] is False and scc["allowPrivilegeEscalation"] is False
    assert scc["requiredDropCapabilities"] == ["ALL"] and not scc["allowedCapabilities"]
    assert not any(
        scc[k]
        for k in (
            "allowHostDirVolumePlugin",
            "allowHostIPC",
            "allowHostNetwork",
            "allowHostPID",
            "allowHostPorts",
        )
    )
    assert "nfs" in scc["volumes"] and "hostPath" not in scc["volumes"] and "*" not in scc["volumes"]
    # the per-user Secret arrives as env: no pod under this SCC may mount a Secret (the hub may
    # create pods; with `secret` volumes it could mount any Secret of the project into one)
    assert "secret" not in scc["volumes"] and "projected" not in scc["volumes"]
    role = one(objects, "ClusterRole")
    assert role["rules"] == [
        {
            "apiGroups": ["security.openshift.io"],
            "resources": ["securitycontextconstraints"],
            "resourceNames": [scc["metadata"]["name"]],
            "verbs": ["use"],
        }
    ]
    bindings = objects_of(objects, "RoleBinding") + objects_of(objects, "ClusterRoleBinding")
    assert len(bindings) == 1 and bindings[0]["kind"] == "RoleBinding"
    assert bindings[0]["metadata"]["namespace"] == "valeria"
    assert bindings[0]["roleRef"]["name"] == role["metadata"]["name"]
    assert bindings[0]["subjects"] == [
        {"kind": "ServiceAccount", "name": "valeria-notebook", "namespace": "valeria"}
    ]


def test_scc_range_matches_the_hubs_uid_range(hub: list[dict]) -> None:
    scc = one(render("valeria-cluster.yaml"), "SecurityContextConstraints")
    cm = one(hub, "ConfigMap", "-env")["data"]
    assert scc["runAsUser"]["uidRangeMin"] == int(cm["VALERIA_UID_MIN"])
    assert scc["runAsUser"]["uidRangeMax"] == int(cm["VALERIA_UID_MAX"])
    sa = one(hub, "ServiceAccount", "notebook")["metadata"]["name"]
    binding = one(render("valeria-cluster.yaml"), "RoleBinding")
    assert binding["subjects"][0]["name"] == sa


# ------------------------------------------------------------------------------------------------
# images: one ImageStream and one BuildConfig per image in images/


def test_every_image_has_an_imagestream_and_a_buildconfig(hub: list[dict]) -> None:
    objects = render("valeria-builds.yaml")
    images = sorted(d.name for d in (REPO / "images").iterdir() if (d / "Dockerfile").exists())
    streams = {o["metadata"]["name"] for o in objects_of(objects, "ImageStream")}
    assert streams == {f"valeria-{name}" for name in images}
    for name in images:
        bc = one(objects, "BuildConfig", f"valeria-{name}")
        assert bc["spec"]["strategy"]["dockerStrategy"]["dockerfilePath"] == f"images/{name}/Dockerfile"
        assert (REPO / bc["spec"]["strategy"]["dockerStrategy"]["dockerfilePath"]).is_file()
        assert "contextDir" not in bc["spec"]["source"], "the build context is the repository root"
        assert bc["spec"]["output"]["to"] == {"kind": "ImageStreamTag", "name": f"valeria-{name}:0.1.0"}
    # the hub deploys these streams' images, and offers the notebook ones as profiles
    profiles = json.loads(one(hub, "ConfigMap", "-env")["data"]["VALERIA_PROFILES"])
    offered = {p["image"].rsplit("/", 1)[1].split(":")[0] for p in profiles}
    assert offered == {s for s in streams if "notebook" in s}


# ------------------------------------------------------------------------------------------------
# the hub's environment: documented, parsed by the hub's settings, and the config file loads with it


def hub_environment(hub: list[dict]) -> dict[str, str]:
    """Exactly the environment the template gives the hub container (admin Secrets filled in)."""
    admin_secrets = {  # what the admin created in step 3 of docs/deploy.md (the Vault one is absent)
        "valeria-hub-keys": {"crypt-key": "a" * 64, "cookie-secret": "b" * 64},
        "valeria-hub-db": {"password": "db-pass-not-logged"},
        "valeria-hub-oidc": {"client-secret": "oidc-secret-not-logged"},
        "valeria-hub-metrics": {"token": "m" * 64},
    }
    container = one(hub, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    env: dict[str, str] = {}
    for source in container["envFrom"]:
        cm = one(hub, "ConfigMap", source["configMapRef"]["name"])
        env.update(cm["data"])
    for item in container["env"]:
        if "configMapKeyRef" in item["valueFrom"]:
            # the admin's own ConfigMaps (extra profiles): optional, absent in a first deployment
            assert item["valueFrom"]["configMapKeyRef"]["optional"] is True, item["name"]
            continue
        ref = item["valueFrom"]["secretKeyRef"]
        secret = admin_secrets.get(ref["name"])
        if secret is None or ref["key"] not in secret:
            assert ref.get("optional"), f"{item['name']} needs Secret {ref['name']} key {ref['key']}"
            continue
        env[item["name"]] = secret[ref["key"]]
    return env


def test_every_hub_variable_is_documented(hub: list[dict]) -> None:
    rows = re.findall(r"^\|([^|]+)\|", (REPO / "docs" / "environment.md").read_text(), re.M)
    documented = {name for first_cell in rows for name in re.findall(r"`([A-Z0-9_]+)`", first_cell)}
    container = one(hub, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    names = set(one(hub, "ConfigMap", "-env")["data"]) | {e["name"] for e in container["env"]}
    assert names - documented == set(), "variables the template sets but docs/environment.md does not list"


def test_hub_settings_accept_the_template_environment(hub: list[dict]) -> None:
    from valeria_hub.settings import HubSettings

    settings = HubSettings.from_env(hub_environment(hub))
    assert settings.spawner == "kubernetes"
    assert settings.hub_public_url == "https://jupyter.apps.example.org"
    assert settings.oauth_callback_url == "https://jupyter.apps.example.org/hub/oauth_callback"
    assert settings.db_url == "postgresql+psycopg2://jupyterhub@postgres.example.org:5432/jupyterhub"
    assert settings.db_password.get() == "db-pass-not-logged"
    assert [p.slug for p in settings.profiles] == ["scipy", "r"]
    # every flavour gets the notebook sizes, in the types KubeSpawner's traits accept
    from jupyterhub.traitlets import ByteSpecification

    for profile in settings.profiles:
        override = profile.as_kubespawner()["kubespawner_override"]
        assert ByteSpecification().validate(None, override["mem_limit"]) == 8 * 1024**3
        assert ByteSpecification().validate(None, override["mem_guarantee"]) == 2 * 1024**3
        assert override["cpu_limit"] == 4 and override["cpu_guarantee"] == 0.5
    assert settings.s3_shared_buckets == ("climate-shared",)


LOAD_CONFIG = r"""
import json, sys
from jupyterhub.app import JupyterHub
argv, config_file = json.loads(sys.argv[1]), sys.argv[2]
app = JupyterHub()
app.parse_command_line(["--config", *argv])
app.load_config_file(config_file)
c = app.config
services = c.JupyterHub.services
roles = c.JupyterHub.load_roles
print(json.dumps({
    "config_file": app.config_file,
    "spawner": c.JupyterHub.spawner_class.__name__,
    "authenticator": c.JupyterHub.authenticator_class.__name__,
    "bind_url": c.JupyterHub.bind_url,
    "hub_bind_url": c.JupyterHub.hub_bind_url,
    "hub_connect_url": c.JupyterHub.hub_connect_url,
    "db_url": c.JupyterHub.db_url,
    "services": services,
    "roles": roles,
    "service_tokens": sorted(c.JupyterHub.service_tokens.get_value({}).values()),
    "service_account": c.ValeriaKubeSpawner.service_account,
    "profiles": [p["slug"] for p in c.ValeriaKubeSpawner.profile_list],
}))
"""


def test_jupyterhub_config_loads_with_the_template_environment(hub: list[dict], tmp_path: Path) -> None:
    config = REPO / "hub_config" / "jupyterhub_config.py"
    if not config.exists():
        pytest.fail("hub_config/jupyterhub_config.py is missing (the hub image copies it)")
    container = one(hub, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    # args, not command: the image's ENTRYPOINT, tini, stays PID 1 (reaps the proxy and the culler)
    assert "command" not in container
    command = container["args"]
    assert command == ["jupyterhub", "--config", "/srv/jupyterhub/jupyterhub_config.py"]
    dockerfile = (REPO / "images" / "hub" / "Dockerfile").read_text()
    assert 'ENTRYPOINT ["/usr/bin/tini", "--"]' in dockerfile
    # the hub image puts the repository's file exactly there
    assert (
        "COPY hub_config/jupyterhub_config.py /srv/jupyterhub/jupyterhub_config.py"
        in (REPO / "images" / "hub" / "Dockerfile").read_text()
    )
    env = hub_environment(hub)
    env.update({"PATH": os.environ["PATH"], "HOME": str(tmp_path), **worktree_path()})
    result = subprocess.run(
        # the image's path of the file, mapped to the repository's (the COPY above ties them)
        [sys.executable, "-c", LOAD_CONFIG, json.dumps([str(config), *command[3:]]), str(config)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = json.loads(result.stdout.strip().splitlines()[-1])
    assert loaded["config_file"] == str(config)
    assert loaded["spawner"] == "ValeriaKubeSpawner"
    assert loaded["authenticator"] == "KeycloakAuthenticator"
    assert loaded["bind_url"] == "http://0.0.0.0:8000"
    assert loaded["hub_bind_url"] == "http://0.0.0.0:8081"
    assert loaded["hub_connect_url"] == "http://valeria-hub.valeria.svc:8081"
    assert loaded["service_account"] == "valeria-notebook"
    assert loaded["profiles"] == ["scipy", "r"]
    # the idle culler is a hub service with only the scopes it needs
    services = {s["name"]: s for s in loaded["services"]}
    roles = {r["name"]: r for r in loaded["roles"]}
    assert {"idle-culler", "metrics"} <= set(services) and {"idle-culler", "metrics"} <= set(roles)
    culler = services["idle-culler"]
    assert culler["command"][1:3] == ["-m", "jupyterhub_idle_culler"]
    assert "--timeout=3600" in culler["command"]
    role = roles["idle-culler"]
    assert role["services"] == ["idle-culler"]
    assert set(role["scopes"]) == {"list:users", "read:users:activity", "read:servers", "delete:servers"}
    # Prometheus' service: read:metrics only, its token from the metrics Secret
    assert services["metrics"] == {"name": "metrics"} and loaded["service_tokens"] == ["metrics"]
    assert roles["metrics"] == {"name": "metrics", "services": ["metrics"], "scopes": ["read:metrics"]}
    # no secret made it into anything printed
    for secret in ("db-pass-not-logged", "oidc-secret-not-logged", "a" * 64, "m" * 64):
        assert secret not in result.stdout + result.stderr


def test_culler_accepts_the_template_options(hub: list[dict]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "jupyterhub_idle_culler", "--help"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0
    env = hub_environment(hub)
    assert (env["VALERIA_CULL_IDLE_TIMEOUT"], env["VALERIA_CULL_EVERY"], env["VALERIA_CULL_MAX_AGE"]) == (
        "3600",
        "300",
        "0",
    )
    config = (REPO / "hub_config" / "jupyterhub_config.py").read_text()
    for option in re.findall(r'f"(--[a-z-]+)=', config):
        assert f"{option} " in result.stdout or f"{option}=" in result.stdout, option


# ------------------------------------------------------------------------------------------------
# monitoring and the image puller


def test_prometheus_scrapes_the_hub_with_the_metrics_token(hub: list[dict]) -> None:
    monitoring = render("valeria-monitoring.yaml")
    monitor = one(monitoring, "ServiceMonitor")
    service = one(hub, "Service")
    selector = monitor["spec"]["selector"]["matchLabels"]
    assert all(service["metadata"]["labels"].get(k) == v for k, v in selector.items())
    (endpoint,) = monitor["spec"]["endpoints"]
    port = next(p for p in service["spec"]["ports"] if p["name"] == endpoint["port"])
    assert endpoint["path"] == "/hub/metrics" and port["port"] == 8081
    # the token Prometheus sends is the one the hub gives its `metrics` service
    container = one(hub, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    token_ref = next(e for e in container["env"] if e["name"] == "VALERIA_METRICS_TOKEN")["valueFrom"]
    credentials = endpoint["authorization"]["credentials"]
    assert {k: credentials[k] for k in ("name", "key")} == {
        k: token_ref["secretKeyRef"][k] for k in ("name", "key")
    }
    assert {"targetLabel": "job", "replacement": "valeria-hub"} in endpoint["relabelings"]
    # Prometheus reaches the hub's API port and the notebooks' metrics port, and nothing else
    policies = objects_of(hub, "NetworkPolicy") + objects_of(monitoring, "NetworkPolicy")
    prometheus = {
        "labels": {},
        "ns": {"kubernetes.io/metadata.name": "openshift-user-workload-monitoring"},
        "ip": "10.129.0.9",
    }
    hub_pod = {"labels": one(hub, "Deployment")["spec"]["template"]["metadata"]["labels"], "ip": "10.128.0.4"}
    notebook = {"labels": {"component": "singleuser-server"}, "ip": "10.128.2.7"}
    assert connects(policies, prometheus, hub_pod, 8081)
    assert not connects(policies, prometheus, hub_pod, 8000)
    assert connects(policies, prometheus, notebook, 9090)
    assert not connects(policies, prometheus, notebook, 8888)
    # nor does it open the metrics port to anyone else
    other_project = {"labels": {}, "ns": {"kubernetes.io/metadata.name": "elsewhere"}, "ip": "10.130.0.2"}
    assert not connects(policies, other_project, notebook, 9090)
    other_notebook = {"labels": {"component": "singleuser-server"}, "ip": "10.128.2.8"}
    assert not connects(policies, other_notebook, notebook, 9090)


def test_image_puller_pulls_every_notebook_flavour_on_every_node(hub: list[dict]) -> None:
    puller = one(render("valeria-cluster.yaml"), "DaemonSet", "image-puller")
    assert puller["metadata"]["namespace"] == "valeria"
    spec = puller["spec"]["template"]["spec"]
    profiles = json.loads(one(hub, "ConfigMap", "-env")["data"]["VALERIA_PROFILES"])
    assert {c["image"] for c in spec["initContainers"]} == {p["image"] for p in profiles}
    for container in spec["initContainers"]:
        # run the image with a no-op command, so the kubelet pulls it; never pull again if present
        assert container["command"] == ["/bin/sh", "-c", "echo pulled"]
        assert container["imagePullPolicy"] == "IfNotPresent"
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
    (pause,) = spec["containers"]
    assert "pause" in pause["image"] and pause["resources"]["limits"]["memory"] == "16Mi"
    # every node: no node selector or affinity; no API token; the restricted SCC admits it
    assert "nodeSelector" not in spec and "affinity" not in spec
    assert spec["automountServiceAccountToken"] is False
    assert spec["securityContext"]["runAsNonRoot"] is True and "runAsUser" not in spec["securityContext"]
    assert puller["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] == "100%"
