#!/usr/bin/env bash
# Regenerates README's walkthrough: runs the end-to-end bookinfo migration against the simulator
# (tests/integration/e2e.rs) and writes what each command printed between README's markers. The
# same test, without OC_AMBIENT_WRITE_WALKTHROUGH, fails when README says anything else.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --workspace --bins
OC_AMBIENT_WRITE_WALKTHROUGH=1 cargo test -p oc-ambient-tests --test integration -- \
  --exact e2e::a_user_migrates_bookinfo_with_the_installed_plugins_and_rolls_it_back
git --no-pager diff --stat README.md
