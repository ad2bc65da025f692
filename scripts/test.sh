#!/usr/bin/env bash
# Sets up, builds and runs every test: unit suites, the real-kernel capability probe, and the
# integration suites that load the real BPF programs against real servers and receivers.
# Needs root (BPF, cgroups, tmpfs mounts). Exits non-zero if any test fails.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "scripts/test.sh: run as root (BPF programs, cgroups and mounts need it)" >&2; exit 1; }
scripts/setup.sh
scripts/build.sh
# Unit suites in parallel; the kernel and integration suites one at a time (they share the
# host's tracepoints, cgroups and loopback ports).
ctest --test-dir build --output-on-failure --timeout 300 -j2 -LE 'integration|capabilities|inject'
ctest --test-dir build --output-on-failure --timeout 300 -L 'integration|capabilities|inject'
