#!/usr/bin/env bash
# The price every process on the host pays for the syscall capture path: nanoseconds per
# read()+write() pair (/dev/zero, /dev/null) of a process pinned to CPU 0,
#   none      no agent;
#   untraced  `edgetrace run -- sleep` attached, the loop outside its cgroup (what every
#             other process on the host pays);
#   traced    the loop itself under `edgetrace run` (non-socket fds: the opt-in check and
#             the call bookkeeping, no HTTP).
#
#   bench/syscall_tax.sh [--rounds N] [--pairs N] [--build DIR]...
#
# Several --build directories are measured side by side, alternating within each round;
# medians per build and mode at the end.
set -euo pipefail
rounds=5 pairs=300000 builds=()
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --pairs) pairs=$2; shift 2 ;;
    --build) builds+=("$(cd "$2" && pwd)"); shift 2 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
((${#builds[@]})) || builds=("$(cd "$(dirname "$0")/.." && pwd)/build")
loop="${builds[0]}/bench/syscall_tax/syscall_loop"
[[ -x $loop ]] || { echo "build syscall_loop first ($loop missing)" >&2; exit 1; }
for b in "${builds[@]}"; do [[ -x $b/userspace/cli/edgetrace ]] || { echo "no edgetrace in $b" >&2; exit 1; }; done
work=$(mktemp -d /tmp/edgetrace-syscall-tax-XXXXXX)
trap 'rm -rf "$work"' EXIT

# The agent logs "capture programs attached" once its programs run.
wait_attached() { for _ in $(seq 300); do grep -q "capture programs attached" "$1" 2>/dev/null && return 0; sleep 0.05; done; return 1; }

declare -A results
record() { results[$1]+="$2 "; printf 'round %d %-10s %-40s %8s ns\n' "$round" "$3" "$4" "$2"; }
for round in $(seq "$rounds"); do
  record none "$("$loop" "$pairs")" none -
  for b in "${builds[@]}"; do
    # SIGTERM, not SIGINT: a background job's children ignore SIGINT in a script.
    "$b/userspace/cli/edgetrace" run --output json --log-level info -- sleep 1000 >/dev/null 2>"$work/agent.log" &
    agent=$!
    wait_attached "$work/agent.log" || { echo "the agent did not attach" >&2; kill -TERM $agent; exit 1; }
    record "untraced $b" "$("$loop" "$pairs")" untraced "$b"
    kill -TERM $agent; wait $agent 2>/dev/null || true
    record "traced $b" "$("$b/userspace/cli/edgetrace" run --output json --log-level warn -- "$loop" "$pairs" 2>/dev/null | tail -1)" traced "$b"
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
echo
none=$(median <<<"${results[none]}")
printf '%-10s %-40s %12s %14s\n' mode build "median ns" "added ns"
printf '%-10s %-40s %12.1f %14s\n' none - "$none" -
for b in "${builds[@]}"; do
  for mode in untraced traced; do
    m=$(median <<<"${results[$mode $b]}")
    printf '%-10s %-40s %12.1f %14.1f\n' "$mode" "$b" "$m" "$(echo "$m - $none" | bc -l)"
  done
done
