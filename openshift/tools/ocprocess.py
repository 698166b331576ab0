"""Render an OpenShift Template the way `oc process` does, without a cluster.

Used by the tests (tests/test_openshift_templates.py) and handy to preview a deployment:

    python openshift/tools/ocprocess.py -f openshift/templates/valeria-hub.yaml --param-file=valeria.env

What `oc process` does, and so what this does:
- every parameter gets its value from the command line (`-p NAME=VALUE`, `--param-file`), else its
  `value`, else a generated value (`generate: expression`, `from: "[a-zA-Z0-9]{16}"`), else "";
  a `required` parameter that ends up empty is an error, and so is an unknown `-p` name;
- `${NAME}` inside any string is replaced by the value (string substitution);
- a string that is exactly `${{NAME}}` is replaced by the value parsed as JSON, so numbers and
  booleans keep their type (non-string substitution); `${{NAME}}` inside a longer string is
  rejected here (oc would produce invalid JSON);
- the template's `labels` are added to every object's metadata.labels.

Stricter than oc on purpose: a `${...}` that names no parameter is an error (oc leaves it as is,
which hides typos).
"""

from __future__ import annotations

import argparse
import json
import re
import secrets
import string
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# `${{NAME}}` first (as oc does), then `${NAME}`; a `}` right after `${NAME}` is ordinary text
_REF = re.compile(r"\$\{\{([A-Za-z0-9_]+)\}\}|\$\{([A-Za-z0-9_]+)\}")
_NONSTRING = re.compile(r"\$\{\{([A-Za-z0-9_]+)\}\}")
_GENERATOR = re.compile(r"\[([^\]]+)\]\{(\d+)\}")
_CLASSES = {
    r"\w": string.ascii_letters + string.digits + "_",
    r"\d": string.digits,
    r"\a": string.ascii_letters + string.digits,
    r"\A": string.punctuation,
}


class TemplateError(ValueError):
    """The template cannot be processed with these parameters."""


def generate(expression: str) -> str:
    """A value for `generate: expression`: `[a-zA-Z0-9]{16}`-style expressions, as oc supports."""
    out = []
    pos = 0
    for m in _GENERATOR.finditer(expression):
        out.append(expression[pos : m.start()])
        out.append("".join(secrets.choice(_charset(m.group(1))) for _ in range(int(m.group(2)))))
        pos = m.end()
    out.append(expression[pos:])
    if pos == 0:
        raise TemplateError(f"unsupported generator expression {expression!r}")
    return "".join(out)


def _charset(spec: str) -> str:
    chars = ""
    i = 0
    while i < len(spec):
        if spec[i] == "\\" and i + 1 < len(spec):
            chars += _CLASSES.get(spec[i : i + 2], spec[i + 1])
            i += 2
        elif i + 2 < len(spec) and spec[i + 1] == "-":
            chars += "".join(chr(c) for c in range(ord(spec[i]), ord(spec[i + 2]) + 1))
            i += 3
        else:
            chars += spec[i]
            i += 1
    return chars


def parameter_values(template: Mapping[str, Any], given: Mapping[str, str]) -> dict[str, str]:
    params = template.get("parameters") or []
    names = [p["name"] for p in params]
    unknown = set(given) - set(names)
    if unknown:
        raise TemplateError(f"unknown parameter(s): {', '.join(sorted(unknown))}")
    values: dict[str, str] = {}
    for p in params:
        name = p["name"]
        if name in given:
            value = str(given[name])
        elif p.get("value") not in (None, ""):
            value = str(p["value"])
        elif p.get("generate") == "expression":
            value = generate(p["from"])
        else:
            value = ""
        if p.get("required") and value == "":
            raise TemplateError(f"parameter {name} is required and has no value")
        values[name] = value
    return values


def substitute(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, dict):
        return {substitute(k, values): substitute(v, values) for k, v in node.items()}
    if isinstance(node, list):
        return [substitute(v, values) for v in node]
    if not isinstance(node, str):
        return node
    whole = _NONSTRING.fullmatch(node)
    if whole:
        name = whole.group(1)
        if name not in values:
            raise TemplateError(f"${{{{{name}}}}} names no parameter")
        try:
            return json.loads(values[name])
        except ValueError:
            raise TemplateError(f"${{{{{name}}}}} needs a JSON value, got {values[name]!r}") from None

    def replace(m: re.Match) -> str:
        if m.group(1):
            raise TemplateError(f"${{{{{m.group(1)}}}}} must be a whole value, not inside {node!r}")
        if m.group(2) not in values:
            raise TemplateError(f"${{{m.group(2)}}} names no parameter (in {node!r})")
        return values[m.group(2)]

    return _REF.sub(replace, node)


def process(template: Mapping[str, Any], params: Mapping[str, str] | None = None) -> list[dict]:
    """The objects of ``template`` with parameters applied, as `oc process` returns them."""
    if template.get("kind") != "Template":
        raise TemplateError("not a Template")
    values = parameter_values(template, params or {})
    objects = substitute(template.get("objects") or [], values)
    labels = substitute(template.get("labels") or {}, values)
    for obj in objects:
        if labels:
            meta = obj.setdefault("metadata", {})
            meta["labels"] = {**labels, **(meta.get("labels") or {})}
    return objects


def load(path: str | Path) -> dict:
    with open(path) as f:
        return yaml.safe_load(f)


def read_param_file(path: str | Path) -> dict[str, str]:
    """`oc process --param-file` format: NAME=VALUE lines, # comments."""
    values = {}
    for line in Path(path).read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            name, sep, value = line.partition("=")
            if not sep:
                raise TemplateError(f"{path}: not NAME=VALUE: {line!r}")
            values[name.strip()] = value
    return values


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-f", "--filename", required=True)
    parser.add_argument("-p", "--param", action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--param-file")
    args = parser.parse_args(argv)
    params = read_param_file(args.param_file) if args.param_file else {}
    for item in args.param:
        name, _, value = item.partition("=")
        params[name] = value
    try:
        objects = process(load(args.filename), params)
    except TemplateError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": objects}, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
