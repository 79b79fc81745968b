#!/usr/bin/env bash
# Builds the kube-testenv multi-call binary to $1, stamping the real Kubernetes version into it
# (the same -X flags hack/lib/version.sh sets), so `kube-apiserver --version` and /version report it.
set -euo pipefail
out=${1:?usage: build.sh OUTPUT}
cd "$(dirname "$0")"
kver=$(sed -n 's#^require k8s.io/kubernetes \(v[0-9.]*\)$#\1#p; s#^\s*k8s.io/kubernetes \(v[0-9.]*\)$#\1#p' go.mod | head -n1)
[ -n "$kver" ] || { echo "cannot read the k8s.io/kubernetes version from testenv/go.mod" >&2; exit 1; }
major=${kver#v}; major=${major%%.*}
minor=${kver#v*.}; minor=${minor%%.*}
ldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X ${pkg}.gitVersion=${kver} -X ${pkg}.gitMajor=${major} -X ${pkg}.gitMinor=${minor}"
  ldflags+=" -X ${pkg}.gitTreeState=clean -X ${pkg}.buildDate=1970-01-01T00:00:00Z"
done
go build -trimpath -ldflags "-s -w${ldflags}" -o "$out" .
