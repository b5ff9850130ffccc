#!/usr/bin/env bash
# The Kubernetes manifests, offline: every overlay under deploy/k8s/overlays renders with
# `kubectl kustomize`, validates strictly (no unknown field) against the schemas of Kubernetes
# K8S_VERSION with kubernetes-validate, and keeps what no schema knows: the members'
# PodDisruptionBudget leaves 2f + 1 of the N members up, and members.txt names those N pods.
# tests/it/kubernetes.rs checks the flags and ORACLE_* variables the manifests give the binary.
#
#   scripts/k8s-check.sh                   # every overlay
#   K8S_VERSION=1.30.0 scripts/k8s-check.sh
#
# Installs kubernetes-validate with pip when missing (it carries every version's schemas, so it
# needs no network after that); fails, never skips, without kubectl or it.
set -euo pipefail
cd "$(dirname "$0")/.."

K8S_VERSION=${K8S_VERSION:-1.32.0}
# Custom resources whose schemas kubernetes-validate does not carry: their operators' own.
UNKNOWN_KINDS_ALLOWED=(ServiceMonitor)

say() { echo "k8s-check: $*" >&2; }
fail() { say "FAILED: $*"; exit 1; }

command -v kubectl >/dev/null 2>&1 || fail "kubectl is needed to render the overlays"
if ! command -v kubernetes-validate >/dev/null 2>&1; then
  say "installing kubernetes-validate with pip"
  python3 -m pip install --quiet --disable-pip-version-check 'kubernetes-validate>=1.32,<2' >&2 \
    || fail "cannot install kubernetes-validate (python3 -m pip install kubernetes-validate)"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
overlays=(deploy/k8s/overlays/*/)
[ -d "${overlays[0]}" ] || fail "no overlay in deploy/k8s/overlays"
for dir in "${overlays[@]}"; do
  name=$(basename "$dir")
  rendered="$work/$name.yaml"
  kubectl kustomize "$dir" >"$rendered" || fail "$name does not render"
  # Exit status 1 on an invalid resource; a kind without a schema is only a warning, which
  # is an error here unless it is a custom resource allowed above (a typo in a kind or a
  # removed apiVersion, e.g. policy/v1beta1, would otherwise pass unchecked).
  report=$(kubernetes-validate --strict --quiet -k "$K8S_VERSION" "$rendered" 2>&1) \
    || fail "$name against Kubernetes $K8S_VERSION:"$'\n'"$report"
  unknown=$(grep "Couldn't find schema" <<<"$report" || true)
  for kind in "${UNKNOWN_KINDS_ALLOWED[@]}"; do
    unknown=$(grep -v "for kind $kind with" <<<"$unknown" || true)
  done
  [ -z "$unknown" ] || fail "$name has resources without a schema:"$'\n'"$unknown"
  python3 - "$name" "$rendered" <<'PY' || exit 1
import sys, yaml

name, path = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(open(path)) if d]
def fail(why):
    sys.exit(f"k8s-check: FAILED: {name}: {why}")
def one(kind, prefix):
    found = [d for d in docs if d["kind"] == kind and d["metadata"]["name"].startswith(prefix)]
    if len(found) != 1:
        fail(f"one {kind} {prefix}… expected, found {len(found)}")
    return found[0]
members = one("StatefulSet", "oracle-member")
n = members["spec"]["replicas"]
f = (n - 1) // 3
budget = one("PodDisruptionBudget", "oracle-member")["spec"].get("minAvailable")
if budget != 2 * f + 1:
    fail(f"{n} members tolerate f = {f}, so 2f + 1 = {2 * f + 1} must stay up; "
         f"the PodDisruptionBudget's minAvailable is {budget}")
listed = [line.split("#", 1)[1].strip() if "#" in line else line
          for line in one("ConfigMap", "oracle-members")["data"]["members.txt"].splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
pods = [f'{members["metadata"]["name"]}-{i}' for i in range(n)]
if listed != pods:
    fail(f"members.txt names {listed}, the StatefulSet runs {pods}")
print(f"k8s-check: {name}: {len(docs)} resources valid; {n} members, f = {f}, "
      f"minAvailable {budget}", file=sys.stderr)
PY
done
say "every overlay renders and validates against Kubernetes $K8S_VERSION"
