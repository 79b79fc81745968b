#!/usr/bin/env bash
# Installs the plugin binaries from a cargo output directory into PREFIX/bin, together with the
# names kubectl and oc look up: a typed `oc ambient-check` runs `oc-ambient_check` (or, failing
# that, `kubectl-ambient_check`), because both turn a dash inside the typed word into an
# underscore. The links keep argv[0], so `--help` shows the command the user typed; the
# kubectl_complete-ambient_TASK link answers kubectl's completion of the plugin's arguments.
#
# Usage: scripts/install.sh CARGO_OUTPUT_DIR PREFIX
set -euo pipefail
from=${1:?usage: install.sh CARGO_OUTPUT_DIR PREFIX}
prefix=${2:?usage: install.sh CARGO_OUTPUT_DIR PREFIX}
mkdir -p "$prefix/bin"
for task in check enable waypoint rollback; do
  binary="oc-ambient-$task"
  [ -x "$from/$binary" ] || { echo "install.sh: $from/$binary not built (run cargo build first)" >&2; exit 1; }
  install -m 0755 "$from/$binary" "$prefix/bin/$binary"
  ln -sf "$binary" "$prefix/bin/kubectl-ambient_$task"
  ln -sf "$binary" "$prefix/bin/oc-ambient_$task"
  # kubectl (1.26+) completes `kubectl ambient-TASK <TAB>` by running this name (see common::complete).
  ln -sf "$binary" "$prefix/bin/kubectl_complete-ambient_$task"
done
echo "installed oc-ambient-{check,enable,waypoint,rollback} and their kubectl-/oc- plugin names into $prefix/bin"
