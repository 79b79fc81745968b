#!/usr/bin/env bash
# Builds the release archives and the krew manifests that point at them.
#
# Usage: scripts/release.sh [OUT_DIR]          (default: dist)
#   RELEASE_URL  where the archives will be downloaded from (default: the GitHub release of the
#                version in Cargo.toml)
#   TARGETS      Rust target triples to build (default: the host's; others only if installed)
#   BUILT_DIR    package the host's binaries from this directory instead of building them
#
# OUT_DIR receives one oc-ambient-VERSION-OS-ARCH.tar.gz per target (the four binaries and
# LICENSE), and krew/ambient-*.yaml: one krew Plugin manifest per command (krew reads one plugin
# per file, named after it), with version, uri and sha256 filled in. The same four documents,
# concatenated, are written to krew-manifest.yaml at the top of the repository when
# UPDATE_MANIFEST=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$root/dist}" && cd "${1:-$root/dist}" && pwd)
version=v$(sed -n 's/^version = "\(.*\)"$/\1/p' "$root/Cargo.toml" | head -n1)
base=${RELEASE_URL:-https://github.com/oc-ambient/oc-ambient/releases/download/$version}
host=$(rustc -vV | sed -n 's/^host: //p')
targets=${TARGETS:-$host}
commands="check enable waypoint rollback"

# krew's os/arch for a Rust target triple.
platform() {
  case "$1" in
    x86_64-unknown-linux-*) echo "linux amd64" ;;
    aarch64-unknown-linux-*) echo "linux arm64" ;;
    x86_64-apple-darwin) echo "darwin amd64" ;;
    aarch64-apple-darwin) echo "darwin arm64" ;;
    *) echo "release.sh: no krew platform for target $1" >&2; return 1 ;;
  esac
}

platforms=()   # "os arch archive sha256" per target
for target in $targets; do
  read -r os arch < <(platform "$target")
  if [ "$target" = "$host" ] && [ -n "${BUILT_DIR:-}" ]; then
    built=$BUILT_DIR
  elif [ "$target" = "$host" ]; then
    (cd "$root" && cargo build --release --bins --locked)
    built="$root/target/release"
  else
    (cd "$root" && cargo build --release --bins --locked --target "$target")
    built="$root/target/$target/release"
  fi
  stage=$(mktemp -d)
  for task in $commands; do install -m 0755 "$built/oc-ambient-$task" "$stage/"; done
  install -m 0644 "$root/LICENSE" "$stage/"
  archive="oc-ambient-$version-$os-$arch.tar.gz"
  # Sorted names, fixed owner and time: the same binaries give the same archive.
  tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 -cf - . | gzip -n > "$out/$archive"
  rm -rf "$stage"
  sha=$(sha256sum "$out/$archive" | cut -d' ' -f1)
  platforms+=("$os $arch $archive $sha")
  echo "release.sh: $out/$archive $sha" >&2
done

short_description() {
  case "$1" in
    check) echo "Check a service mesh for its move to ambient mode" ;;
    enable) echo "Move service mesh namespaces to ambient mode" ;;
    waypoint) echo "Waypoints and L7 policy migration for ambient" ;;
    rollback) echo "Roll back a service mesh ambient migration" ;;
  esac
}

description() {
  case "$1" in
    check) cat <<'TEXT'
    Read-only assessment of an OpenShift Service Mesh 3.2 (Istio 1.27, Sail
    operator) deployment before and during its move from sidecar mode to
    ambient mode: prerequisites, blockers, policy traps, the migration phase of
    every namespace and the validation checkpoint of any step of the guide.
    Works against a live cluster or offline against YAML dumps.
TEXT
    ;;
    enable) cat <<'TEXT'
    Moves the control plane, the CNI and ztunnel to ambient mode, restarts
    sidecar workloads for HBONE, enrols namespaces and removes sidecars, one
    namespace at a time, with a plan shown first, gates between steps, a backup
    and a journal so that every step can be rolled back.
TEXT
    ;;
    waypoint) cat <<'TEXT'
    Deploys waypoints, converts VirtualServices and DestinationRules to
    HTTPRoutes and version Services, migrates AuthorizationPolicies with bypass
    protection, activates the waypoint and cleans up the replaced sidecar-era
    configuration, verifying that request outcomes do not change.
TEXT
    ;;
    rollback) cat <<'TEXT'
    Backs out any step of an ambient migration, or all of it, from the journal
    and backup the other ambient-* commands keep (locally or in the cluster).
TEXT
    ;;
  esac
}

caveats() {
  echo "    For OpenShift Service Mesh 3.2 (Istio 1.27) installed with the Sail operator."
  if [ "$1" = check ]; then
    echo "    Read-only: view rights on the mesh resources are enough."
  else
    echo "    It changes the cluster: run it as cluster-admin (or with equivalent rights);"
    echo "    it checks every permission it needs before its first write."
  fi
  echo "    Usage: kubectl ambient-$1 --help"
}

mkdir -p "$out/krew"
for task in $commands; do
  {
    echo "apiVersion: krew.googlecontainertools.github.com/v1alpha2"
    echo "kind: Plugin"
    echo "metadata:"
    echo "  name: ambient-$task"
    echo "spec:"
    echo "  version: $version"
    echo "  homepage: https://github.com/oc-ambient/oc-ambient"
    echo "  shortDescription: $(short_description "$task")"
    echo "  description: |"
    description "$task"
    echo "  caveats: |"
    caveats "$task"
    echo "  platforms:"
    for entry in "${platforms[@]}"; do
      read -r os arch archive sha <<<"$entry"
      echo "  - selector:"
      echo "      matchLabels:"
      echo "        os: $os"
      echo "        arch: $arch"
      echo "    uri: $base/$archive"
      echo "    sha256: $sha"
      echo "    bin: oc-ambient-$task"
      echo "    files:"
      echo "    - from: oc-ambient-$task"
      echo "      to: ."
      echo "    - from: LICENSE"
      echo "      to: ."
    done
  } > "$out/krew/ambient-$task.yaml"
done
echo "release.sh: krew manifests in $out/krew" >&2

if [ "${UPDATE_MANIFEST:-0}" = 1 ]; then
  {
    echo "# The suite's krew manifests, one Plugin per command; written by scripts/release.sh"
    echo "# (UPDATE_MANIFEST=1), which builds the archives they point at."
    for task in $commands; do echo "---"; cat "$out/krew/ambient-$task.yaml"; done
  } > "$root/krew-manifest.yaml"
  echo "release.sh: updated $root/krew-manifest.yaml" >&2
fi
