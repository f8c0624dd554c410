#!/usr/bin/env bash
# Validates deploy/k8s/*.yaml offline against the Kubernetes OpenAPI schemas (PyPI
# `kubernetes-validate`, strict: unknown fields are errors), for the oldest supported version
# (1.30: preStop `sleep`) and the newest the package ships. ServiceMonitor is a CRD the package
# has no schema for: it is checked structurally below, with the cross-references between files
# (selectors, ports, ServiceAccount, ConfigMap). The router config inside the ConfigMap is
# checked by `cargo test` (router/tests/cli.rs runs `router check-config` on it).
# Usage: deploy/k8s/validate.sh   (KUBE_VALIDATE_VENV=dir to choose where the venv goes)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="${KUBE_VALIDATE_VENV:-${TMPDIR:-/tmp}/prefix-router-kubernetes-validate}"

if [ ! -x "$venv/bin/kubernetes-validate" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check kubernetes-validate
fi

manifests=("$here"/*.yaml)
for version in 1.30.0 latest; do
  flags=(--strict --quiet)
  [ "$version" = latest ] || flags+=(-k "$version")
  echo "kubernetes-validate --strict ${version}: ${#manifests[@]} files"
  out="$("$venv/bin/kubernetes-validate" "${flags[@]}" "${manifests[@]}" 2>&1)" || {
    echo "$out" >&2
    exit 1
  }
  # A missing schema is only a warning there: accept it for the CRD alone (a typo in a
  # built-in kind's apiVersion must fail).
  unexpected="$(grep -v "Couldn't find schema for kind ServiceMonitor " <<<"$out" | grep . || true)"
  if [ -n "$unexpected" ]; then
    echo "$unexpected" >&2
    exit 1
  fi
done

"$venv/bin/python" - "${manifests[@]}" <<'PY'
"""Structural check of ServiceMonitors and cross-references between the manifests."""
import re
import sys

import yaml

docs = []
for path in sys.argv[1:]:
    with open(path) as f:
        docs += [(path, d) for d in yaml.safe_load_all(f) if d]

def find(kind, ns, name):
    return [d for _, d in docs if d["kind"] == kind and d["metadata"].get("namespace") == ns
            and d["metadata"]["name"] == name]

errors = []
def check(ok, where, why):
    if not ok:
        errors.append(f"{where}: {why}")

duration = re.compile(r"^([0-9]+(ms|s|m|h))+$")
for path, d in docs:
    kind, meta = d["kind"], d["metadata"]
    ns, where = meta.get("namespace"), f"{path}: {d['kind']}/{meta['name']}"
    if kind != "Namespace":
        check(ns and find("Namespace", None, ns), where, f"namespace {ns!r} is not defined")
    if kind == "ServiceMonitor":
        check(d["apiVersion"] == "monitoring.coreos.com/v1", where, "apiVersion")
        spec = d.get("spec", {})
        check(set(spec) <= {"selector", "endpoints", "namespaceSelector", "jobLabel"}, where,
              f"unexpected spec keys {sorted(set(spec))}")
        want = spec.get("selector", {}).get("matchLabels", {})
        check(want, where, "spec.selector.matchLabels is empty")
        services = [s for _, s in docs if s["kind"] == "Service"
                    and s["metadata"].get("namespace") == ns
                    and want.items() <= s["metadata"].get("labels", {}).items()]
        check(len(services) == 1, where, f"selector {want} matches {len(services)} Services")
        ports = {p.get("name") for s in services for p in s["spec"]["ports"]}
        check(spec.get("endpoints"), where, "no endpoints")
        for i, e in enumerate(spec.get("endpoints", [])):
            check(set(e) <= {"port", "path", "interval", "scrapeTimeout", "scheme"}, where,
                  f"endpoints[{i}] has unexpected keys {sorted(e)}")
            check(e.get("port") in ports, where, f"endpoints[{i}].port {e.get('port')!r} not in {ports}")
            check(str(e.get("path", "/metrics")).startswith("/"), where, f"endpoints[{i}].path")
            check(duration.match(str(e.get("interval", "30s"))), where, f"endpoints[{i}].interval")
    if kind in ("Deployment", "StatefulSet"):
        spec = d["spec"]["template"]["spec"]
        sa = spec.get("serviceAccountName")
        if sa:
            check(find("ServiceAccount", ns, sa), where, f"ServiceAccount {sa} is not defined")
        for v in spec.get("volumes", []):
            if "configMap" in v:
                check(find("ConfigMap", ns, v["configMap"]["name"]), where,
                      f"ConfigMap {v['configMap']['name']} is not defined")
        labels = d["spec"]["selector"]["matchLabels"]
        check(labels.items() <= d["spec"]["template"]["metadata"]["labels"].items(), where,
              "selector does not match the pod labels")
        if kind == "StatefulSet":
            check(find("Service", ns, d["spec"]["serviceName"]), where, "serviceName Service missing")
    if kind == "Service":
        pods = [w for _, w in docs if w["kind"] in ("Deployment", "StatefulSet")
                and w["metadata"].get("namespace") == ns
                and d["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()]
        check(len(pods) == 1, where, f"selector matches {len(pods)} workloads")
    if kind == "RoleBinding":
        check(find(d["roleRef"]["kind"], ns, d["roleRef"]["name"]), where, "roleRef is not defined")
        for s in d["subjects"]:
            check(find(s["kind"], s.get("namespace"), s["name"]), where, f"subject {s['name']} is not defined")

router = [d for _, d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "prefix-router"]
check(router, "router.yaml", "no prefix-router Deployment")
for d in router:
    c = d["spec"]["template"]["spec"]["containers"][0]
    check(c["livenessProbe"]["httpGet"]["path"] == "/health", "router", "liveness probe is not /health")
    check(c["readinessProbe"]["httpGet"]["path"] == "/readiness", "router", "readiness probe is not /readiness")

if errors:
    print("\n".join(errors), file=sys.stderr)
    sys.exit(1)
print(f"structure and cross-references: {len(docs)} objects ok")
PY
