"""A small field schema of the OpenShift kinds the templates use, and a validator.

kubernetes-validate knows only Kubernetes' own kinds. For OpenShift's (Route, ImageStream,
BuildConfig, SecurityContextConstraints, Template) this module writes down the API fields the
templates may use, from the OpenShift 4 API reference (route.openshift.io/v1,
image.openshift.io/v1, build.openshift.io/v1, security.openshift.io/v1, template.openshift.io/v1),
and of the Prometheus Operator's ServiceMonitor and PodMonitor (monitoring.coreos.com/v1, which
OpenShift's monitoring stack serves):
field names, types, enums and required fields. It is a subset: a field that is not listed is an
error, so a typo (`insecureEdgeTerminationPolicy: redirect`, `spec.tls.terminaton`) fails the tests
instead of being silently dropped by the API server.

A schema node is a dict: {"type": "object", "fields": {...}, "required": [...], "open": bool}
("open" allows any key, e.g. labels), {"type": "array", "items": node}, {"type": "string",
"enum": [...]}, {"type": "integer", "min": n}, {"type": "boolean"}, or {"type": "any"}.
"""

from __future__ import annotations

from typing import Any

S = {"type": "string"}
I0 = {"type": "integer", "min": 0}
B = {"type": "boolean"}
ANY = {"type": "any"}
STRMAP = {"type": "object", "open": True, "values": S}


def obj(fields: dict, required: tuple[str, ...] = ()) -> dict:
    return {"type": "object", "fields": fields, "required": list(required)}


def arr(items: dict) -> dict:
    return {"type": "array", "items": items}


def enum(*values: str) -> dict:
    return {"type": "string", "enum": list(values)}


METADATA = obj(
    {
        "name": S,
        "namespace": S,
        "labels": STRMAP,
        "annotations": STRMAP,
        "generateName": S,
    },
    ("name",),
)
OBJECT_REF = obj({"kind": S, "name": S, "namespace": S, "apiVersion": S}, ("name",))
LOCAL_REF = obj({"name": S}, ("name",))

ROUTE = obj(
    {
        "apiVersion": enum("route.openshift.io/v1"),
        "kind": enum("Route"),
        "metadata": METADATA,
        "spec": obj(
            {
                "host": S,
                "subdomain": S,
                "path": S,
                "to": obj({"kind": enum("Service"), "name": S, "weight": I0}, ("kind", "name")),
                "alternateBackends": arr(obj({"kind": enum("Service"), "name": S, "weight": I0}, ("name",))),
                "port": obj({"targetPort": ANY}, ("targetPort",)),
                "tls": obj(
                    {
                        "termination": enum("edge", "passthrough", "reencrypt"),
                        "insecureEdgeTerminationPolicy": enum("Allow", "Redirect", "None", ""),
                        "certificate": S,
                        "key": S,
                        "caCertificate": S,
                        "destinationCACertificate": S,
                        "externalCertificate": LOCAL_REF,
                    },
                    ("termination",),
                ),
                "wildcardPolicy": enum("None", "Subdomain"),
            },
            ("to",),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

IMAGE_STREAM = obj(
    {
        "apiVersion": enum("image.openshift.io/v1"),
        "kind": enum("ImageStream"),
        "metadata": METADATA,
        "spec": obj(
            {
                "lookupPolicy": obj({"local": B}, ("local",)),
                "dockerImageRepository": S,
                "tags": arr(
                    obj(
                        {
                            "name": S,
                            "annotations": STRMAP,
                            "from": OBJECT_REF,
                            "importPolicy": obj({"insecure": B, "scheduled": B, "importMode": S}),
                            "referencePolicy": obj({"type": enum("Source", "Local")}, ("type",)),
                        },
                        ("name",),
                    )
                ),
            }
        ),
    },
    ("apiVersion", "kind", "metadata"),
)

_BUILD_TRIGGER = obj(
    {
        "type": enum("GitHub", "GitLab", "Bitbucket", "Generic", "ImageChange", "ConfigChange"),
        "github": obj({"secret": S, "secretReference": LOCAL_REF}),
        "gitlab": obj({"secret": S, "secretReference": LOCAL_REF}),
        "bitbucket": obj({"secret": S, "secretReference": LOCAL_REF}),
        "generic": obj({"secret": S, "secretReference": LOCAL_REF, "allowEnv": B}),
        "imageChange": obj({"from": OBJECT_REF, "paused": B}),
    },
    ("type",),
)
_ENV = arr(obj({"name": S, "value": S, "valueFrom": ANY}, ("name",)))
BUILD_CONFIG = obj(
    {
        "apiVersion": enum("build.openshift.io/v1"),
        "kind": enum("BuildConfig"),
        "metadata": METADATA,
        "spec": obj(
            {
                "runPolicy": enum("Serial", "Parallel", "SerialLatestOnly"),
                "serviceAccount": S,
                "source": obj(
                    {
                        "type": enum("Git", "Dockerfile", "Binary", "Image", "None"),
                        "git": obj(
                            {"uri": S, "ref": S, "httpProxy": S, "httpsProxy": S, "noProxy": S}, ("uri",)
                        ),
                        "dockerfile": S,
                        "contextDir": S,
                        "sourceSecret": LOCAL_REF,
                    },
                    ("type",),
                ),
                "strategy": obj(
                    {
                        "type": enum("Docker", "Source", "Custom", "JenkinsPipeline"),
                        "dockerStrategy": obj(
                            {
                                "dockerfilePath": S,
                                "from": OBJECT_REF,
                                "pullSecret": LOCAL_REF,
                                "noCache": B,
                                "forcePull": B,
                                "env": _ENV,
                                "buildArgs": _ENV,
                                "imageOptimizationPolicy": S,
                            }
                        ),
                    },
                    ("type",),
                ),
                "output": obj(
                    {
                        "to": OBJECT_REF,
                        "pushSecret": LOCAL_REF,
                        "imageLabels": arr(obj({"name": S, "value": S})),
                    }
                ),
                "resources": obj({"limits": STRMAP, "requests": STRMAP}),
                "triggers": arr(_BUILD_TRIGGER),
                "nodeSelector": STRMAP,
                "completionDeadlineSeconds": I0,
                "successfulBuildsHistoryLimit": I0,
                "failedBuildsHistoryLimit": I0,
            },
            ("source", "strategy"),
        ),
    },
    ("apiVersion", "kind", "metadata", "spec"),
)

_RANGES = arr(obj({"min": I0, "max": I0}, ("min", "max")))
_NULLABLE_STRS = {"type": "array", "items": S, "nullable": True}
SCC_VOLUMES = (
    "*",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cephFS",
    "cinder",
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "fc",
    "flexVolume",
    "flocker",
    "gcePersistentDisk",
    "gitRepo",
    "glusterfs",
    "hostPath",
    "iscsi",
    "nfs",
    "none",
    "persistentVolumeClaim",
    "photonPersistentDisk",
    "portworxVolume",
    "projected",
    "quobyte",
    "rbd",
    "scaleIO",
    "secret",
    "storageOS",
    "vsphere",
)
SCC = obj(
    {
        "apiVersion": enum("security.openshift.io/v1"),
        "kind": enum("SecurityContextConstraints"),
        "metadata": METADATA,
        "priority": {"type": "integer", "min": 0, "nullable": True},
        "allowPrivilegedContainer": B,
        "allowPrivilegeEscalation": B,
        "defaultAllowPrivilegeEscalation": B,
        "allowHostDirVolumePlugin": B,
        "allowHostIPC": B,
        "allowHostNetwork": B,
        "allowHostPID": B,
        "allowHostPorts": B,
        "readOnlyRootFilesystem": B,
        "allowedCapabilities": _NULLABLE_STRS,
        "defaultAddCapabilities": _NULLABLE_STRS,
        "requiredDropCapabilities": _NULLABLE_STRS,
        "allowedUnsafeSysctls": _NULLABLE_STRS,
        "forbiddenSysctls": _NULLABLE_STRS,
        "seccompProfiles": _NULLABLE_STRS,
        "runAsUser": obj(
            {
                "type": enum("MustRunAs", "MustRunAsRange", "MustRunAsNonRoot", "RunAsAny"),
                "uid": I0,
                "uidRangeMin": I0,
                "uidRangeMax": I0,
            },
            ("type",),
        ),
        "seLinuxContext": obj({"type": enum("MustRunAs", "RunAsAny"), "seLinuxOptions": STRMAP}, ("type",)),
        "fsGroup": obj({"type": enum("MustRunAs", "RunAsAny"), "ranges": _RANGES}, ("type",)),
        "supplementalGroups": obj({"type": enum("MustRunAs", "RunAsAny"), "ranges": _RANGES}, ("type",)),
        "volumes": {"type": "array", "items": enum(*SCC_VOLUMES)},
        "users": _NULLABLE_STRS,
        "groups": _NULLABLE_STRS,
    },
    ("apiVersion", "kind", "metadata", "runAsUser", "seLinuxContext"),
)

TEMPLATE = obj(
    {
        "apiVersion": enum("template.openshift.io/v1"),
        "kind": enum("Template"),
        "metadata": METADATA,
        "labels": STRMAP,
        "message": S,
        "objects": arr({"type": "object", "open": True, "values": ANY}),
        "parameters": arr(
            obj(
                {
                    "name": S,
                    "displayName": S,
                    "description": S,
                    "value": S,
                    "required": B,
                    "generate": enum("expression"),
                    "from": S,
                },
                ("name",),
            )
        ),
    },
    ("apiVersion", "kind", "metadata", "objects"),
)

_SELECTOR = obj({"matchLabels": STRMAP})
_RELABEL = obj(
    {
        "sourceLabels": arr(S),
        "separator": S,
        "targetLabel": S,
        "regex": S,
        "modulus": I0,
        "replacement": S,
        "action": enum("replace", "keep", "drop", "labelmap", "labeldrop", "labelkeep", "hashmod"),
    }
)
_SCRAPE = {
    "port": S,
    "path": S,
    "scheme": enum("http", "https"),
    "interval": S,
    "scrapeTimeout": S,
    "honorLabels": B,
    "authorization": obj(
        {"type": S, "credentials": obj({"name": S, "key": S, "optional": B}, ("name", "key"))},
        ("credentials",),
    ),
    "relabelings": arr(_RELABEL),
    "metricRelabelings": arr(_RELABEL),
}


def _monitor(kind: str, endpoints: str) -> dict:
    """ServiceMonitor (`endpoints`) and PodMonitor (`podMetricsEndpoints`): the same shape."""
    spec = obj(
        {"selector": _SELECTOR, "jobLabel": S, endpoints: arr(obj(_SCRAPE, ("port",)))},
        ("selector", endpoints),
    )
    return obj(
        {
            "apiVersion": enum("monitoring.coreos.com/v1"),
            "kind": enum(kind),
            "metadata": METADATA,
            "spec": spec,
        },
        ("apiVersion", "kind", "metadata", "spec"),
    )


SERVICE_MONITOR = _monitor("ServiceMonitor", "endpoints")
POD_MONITOR = _monitor("PodMonitor", "podMetricsEndpoints")

SCHEMAS = {
    ("route.openshift.io/v1", "Route"): ROUTE,
    ("image.openshift.io/v1", "ImageStream"): IMAGE_STREAM,
    ("build.openshift.io/v1", "BuildConfig"): BUILD_CONFIG,
    ("security.openshift.io/v1", "SecurityContextConstraints"): SCC,
    ("template.openshift.io/v1", "Template"): TEMPLATE,
    ("monitoring.coreos.com/v1", "ServiceMonitor"): SERVICE_MONITOR,
    ("monitoring.coreos.com/v1", "PodMonitor"): POD_MONITOR,
}


def is_openshift(obj_: dict) -> bool:
    """True for the kinds this module validates (not Kubernetes' own, which kubernetes-validate does)."""
    api = str(obj_.get("apiVersion", ""))
    return ".openshift.io/" in api or api.startswith("monitoring.coreos.com/")


def validate(obj_: dict) -> list[str]:
    """Errors of one OpenShift object against its schema ([] when valid)."""
    key = (obj_.get("apiVersion"), obj_.get("kind"))
    schema = SCHEMAS.get(key)
    if schema is None:
        return [f"no schema for {key[0]} {key[1]}"]
    errors: list[str] = []
    _check(obj_, schema, key[1] or "", errors)
    return errors


def _check(value: Any, schema: dict, where: str, errors: list[str]) -> None:
    kind = schema["type"]
    if kind == "any":
        return
    if value is None:
        if not schema.get("nullable"):
            errors.append(f"{where}: null is not allowed")
        return
    if kind == "object":
        if not isinstance(value, dict):
            errors.append(f"{where}: expected an object, got {type(value).__name__}")
            return
        if schema.get("open"):
            for k, v in value.items():
                _check(v, schema.get("values", ANY), f"{where}.{k}", errors)
            return
        fields = schema["fields"]
        for k, v in value.items():
            if k not in fields:
                errors.append(f"{where}: unknown field {k!r}")
            else:
                _check(v, fields[k], f"{where}.{k}", errors)
        for k in schema.get("required", []):
            if k not in value:
                errors.append(f"{where}: missing required field {k!r}")
    elif kind == "array":
        if not isinstance(value, list):
            errors.append(f"{where}: expected a list, got {type(value).__name__}")
            return
        for i, item in enumerate(value):
            _check(item, schema["items"], f"{where}[{i}]", errors)
    elif kind == "string":
        if not isinstance(value, str):
            errors.append(f"{where}: expected a string, got {type(value).__name__} {value!r}")
        elif "enum" in schema and value not in schema["enum"]:
            errors.append(f"{where}: {value!r} is not one of {schema['enum']}")
    elif kind == "integer":
        if not isinstance(value, int) or isinstance(value, bool):
            errors.append(f"{where}: expected an integer, got {type(value).__name__} {value!r}")
        elif "min" in schema and value < schema["min"]:
            errors.append(f"{where}: {value} is below {schema['min']}")
    elif kind == "boolean":
        if not isinstance(value, bool):
            errors.append(f"{where}: expected a boolean, got {type(value).__name__} {value!r}")
