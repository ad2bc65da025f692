#!/usr/bin/env bash
# Sets up, builds, then traces an unmodified python3 http.server: a few requests with curl,
# and the spans edgetrace printed for them (stdout), with the agent's own log on stderr.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $(id -u) -eq 0 ]] || { echo "scripts/demo.sh: run as root" >&2; exit 1; }
scripts/setup.sh
scripts/build.sh
build/userspace/cli/edgetrace doctor || true
port=8089
echo "== tracing: python3 -m http.server $port ==" >&2
build/userspace/cli/edgetrace run --service-name demo-http -- python3 -m http.server "$port" --bind 127.0.0.1 &
agent=$!
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$port/" && break; sleep 0.2; done
curl -s -o /dev/null "http://127.0.0.1:$port/?page=1"
curl -s -o /dev/null "http://127.0.0.1:$port/missing"
curl -s -o /dev/null -H "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01" "http://127.0.0.1:$port/joined"
sleep 1.5
kill -INT "$agent"
wait "$agent" || true
