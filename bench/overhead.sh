#!/usr/bin/env bash
# Tracing overhead on nginx serving a small response, measured side by side in one run:
# baseline and traced runs alternate, wrk on loopback, and we report medians and ratios.
#
#   bench/overhead.sh [--rounds N] [--duration S] [--connections C] [--build DIR]
#                     [--modes baseline,traced,traced-0.01] [--kernel-ns | --kernel-detail]
#                     [--browser-headers] [--no-pin] [--agent-config FILE]
#
# Modes: baseline (nginx alone), traced (100% head sampling), traced-R (traceidratio R),
# both with the default settings; sockets and sockets-R are the same on the cgroup socket
# path (`--capture-path sockets --no-inject`); btf and btf-R on the syscall path's BTF raw
# tracepoints (`--syscall-hooks btf_tracepoints`), tracepoints and tracepoints-R on its
# fallback hooks (`--syscall-hooks tracepoints`).
# Each traced mode runs nginx under `edgetrace run`; the agent's status line gives the
# exchanges it emitted and counted as unsampled, whose sum must match the requests wrk
# completed ("every request captured"). With --kernel-ns, one more run per traced mode with
# kernel.bpf_stats_enabled=1 reports the BPF programs' run time per request (kept out of
# the throughput rounds: the statistics themselves cost time). --kernel-detail adds each
# program's runs and nanoseconds per request.
# wrk runs on CPU 0 and nginx on CPU 1 (the agent is left to the scheduler): unpinned, this
# 2-core VM flips between ~110 k and ~140 k req/s baselines as the scheduler places the two,
# which drowns the differences measured here. --no-pin leaves all three to the scheduler.
# --browser-headers makes wrk send the headers a browser sends (a ~400-byte request head
# instead of ~40 bytes), so the traceparent search has a realistic head to cover.
# --agent-config passes a YAML config (docs/configuration.md) to every traced run.
set -euo pipefail
source "$(dirname "$0")/lib/nginx_hello.sh"

rounds=5 duration=10 connections=50 threads=1 kernel_ns=0 kernel_detail= wrk_headers=() pin=1 agent_config=()
build="$(cd "$(dirname "$0")/.." && pwd)/build"
modes=(baseline traced)
while (($#)); do
  case "$1" in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --build) build=$2; shift 2 ;;
    --modes) IFS=, read -r -a modes <<<"$2"; shift 2 ;;
    --kernel-ns) kernel_ns=1; shift ;;
    --kernel-detail) kernel_ns=1 kernel_detail=1; shift ;;
    --no-pin) pin=0; shift ;;
    --agent-config) agent_config=(--config "$(realpath "$2")"); shift 2 ;;
    --browser-headers)
      wrk_headers=(
        -H "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0"
        -H "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,image/avif,image/webp,*/*;q=0.8"
        -H "Accept-Language: en-GB,en;q=0.7,de;q=0.3"
        -H "Accept-Encoding: gzip, deflate, br, zstd"
        -H "Cookie: session=3f9a1c2e7b5d4a6f8e0c1b2a3d4e5f60; theme=dark; consent=1"
        -H "Referer: http://127.0.0.1/catalogue/items?page=2")
      shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
edgetrace="$build/userspace/cli/edgetrace"
[[ -x "$edgetrace" ]] || { echo "build edgetrace first ($edgetrace missing)" >&2; exit 1; }
command -v wrk >/dev/null && command -v nginx >/dev/null || { echo "run scripts/setup.sh first (wrk, nginx)" >&2; exit 1; }

client_cpu=() server_cpu=()
if ((pin)) && (($(nproc) >= 2)); then client_cpu=(taskset -c 0) server_cpu=(taskset -c 1); fi
work=$(mktemp -d /tmp/edgetrace-bench-XXXXXX)
trap 'pkill -f "$work/nginx.conf" 2>/dev/null || true; rm -rf "$work"' EXIT
port=$(free_port)
write_nginx_hello_conf "$work" "$port"


# Prints "requests_per_second p99_ms requests spans".
run_mode() {
  local mode=$1 pid agent_log="$work/agent-$1.log"
  case "$mode" in
    baseline) "${server_cpu[@]}" nginx -p "$work" -c "$work/nginx.conf" -g "daemon off;" & pid=$! ;;
    *)
      local flags=() sampler=() ratio
      [[ $mode == sockets* ]] && flags=(--capture-path sockets --no-inject)
      [[ $mode == tracepoints* ]] && flags=(--syscall-hooks tracepoints)
      [[ $mode == btf* ]] && flags=(--syscall-hooks btf_tracepoints)
      if [[ $mode == *-* ]]; then
        ratio=${mode#*-}
        sampler=(OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG="$ratio")
      fi
      env "${sampler[@]}" "$edgetrace" run --output json --log-level info "${agent_config[@]}" "${flags[@]}" -- "${server_cpu[@]}" nginx -p "$work" -c "$work/nginx.conf" -g "daemon off;" >/dev/null 2>"$agent_log" & pid=$! ;;
  esac
  wait_for_port "$port" || { echo "nginx did not start" >&2; kill "$pid"; return 1; }
  local out
  out=$("${client_cpu[@]}" wrk -t$threads -c$connections -d${duration}s --latency "${wrk_headers[@]}" "http://127.0.0.1:$port/")
  if [[ ${STATS_FILE:-} ]]; then bpftool prog show --json >"$STATS_FILE"; fi
  kill -INT "$pid"; wait "$pid" 2>/dev/null || true
  local rps p99 requests spans=-
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  requests=$(awk '/requests in/ {print $1}' <<<"$out")
  p99=$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v*=1000}; print v}' <<<"$out")
  if [[ $mode != baseline ]]; then
    spans=$(grep -o 'exchanges=[0-9]*' "$agent_log" | tail -1 | cut -d= -f2)
    local unsampled; unsampled=$(grep -o 'unsampled=[0-9]*' "$agent_log" | tail -1 | cut -d= -f2)
    spans="${spans:-0}+${unsampled:-0}"
  fi
  echo "$rps $p99 $requests $spans"
}

declare -A rps_of p99_of paired_of
echo "nginx return-200, wrk -t$threads -c$connections -d${duration}s${wrk_headers:+ with browser headers}${client_cpu:+, wrk on CPU 0 and nginx on CPU 1}, $rounds alternating rounds, modes: ${modes[*]}"
# Each round starts one mode further on (round 2 runs the second mode first, and so on), so
# that no mode always runs right after the same other one or at the same point of a round.
for round in $(seq "$rounds"); do
  declare -A round_rps=()
  for i in "${!modes[@]}"; do
    mode=${modes[$(((i + round - 1) % ${#modes[@]}))]}
    read -r rps p99 requests spans < <(run_mode "$mode")
    printf 'round %d %-14s %10s req/s  p99 %7s ms  requests %8s  captured(emitted+unsampled) %s\n' "$round" "$mode" "$rps" "$p99" "$requests" "$spans"
    rps_of[$mode]+="$rps "; p99_of[$mode]+="$p99 "; round_rps[$mode]=$rps
  done
  if [[ -n ${round_rps[baseline]:-} ]]; then
    for mode in "${modes[@]}"; do paired_of[$mode]+="$(echo "${round_rps[$mode]} / ${round_rps[baseline]}" | bc -l) "; done
  fi
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else print (a[NR/2]+a[NR/2+1])/2}'; }
if ((rounds)); then
  base_rps=$(median <<<"${rps_of[baseline]}")
  base_p99=$(median <<<"${p99_of[baseline]}")
  echo
  # "paired": the median of each round's ratio to that round's baseline, which a drift of the
  # whole machine between rounds moves less than the ratio of the medians.
  printf '%-14s %12s %10s %10s %12s %14s\n' mode "median req/s" ratio paired "median p99" "added p99 ms"
  for mode in "${modes[@]}"; do
    m_rps=$(median <<<"${rps_of[$mode]}"); m_p99=$(median <<<"${p99_of[$mode]}")
    paired=$(median <<<"${paired_of[$mode]:-1}")
    printf '%-14s %12.0f %10.3f %10.3f %12.3f %14.3f\n' "$mode" "$m_rps" "$(echo "$m_rps / $base_rps" | bc -l)" "$paired" "$m_p99" "$(echo "$m_p99 - $base_p99" | bc -l)"
  done
fi

if ((kernel_ns)); then
  echo
  echo "kernel time per request (kernel.bpf_stats_enabled=1, one run per mode):"
  previous=$(sysctl -n kernel.bpf_stats_enabled)
  sysctl -qw kernel.bpf_stats_enabled=1
  for mode in "${modes[@]}"; do
    [[ $mode == baseline ]] && continue
    STATS_FILE="$work/stats-$mode.json"
    read -r rps p99 requests spans < <(STATS_FILE=$STATS_FILE run_mode "$mode")
    python3 - "$STATS_FILE" "$requests" "$mode" ${kernel_detail:+--detail} <<'PY'
import json, sys
programs = json.load(open(sys.argv[1]))
requests = int(sys.argv[2])
ours = [p for p in programs if p.get("name", "").startswith(("enter_", "exit_", "on_", "et_", "socket_"))]
total = sum(p.get("run_time_ns", 0) for p in ours)
print(f"{sys.argv[3]:<14} {total / requests:8.0f} ns/request over {requests} requests "
      f"({len(ours)} programs; per-program mean ns: " +
      ", ".join(f"{p['name']}={p['run_time_ns'] // max(p['run_cnt'], 1)}" for p in sorted(ours, key=lambda p: -p.get('run_time_ns', 0))[:6] if p.get('run_cnt')) + ")")
if "--detail" in sys.argv[4:]:
    for p in sorted(ours, key=lambda p: -p.get("run_time_ns", 0)):
        if p.get("run_cnt"):
            print(f"    {p['name']:<16} {p['run_cnt'] / requests:6.2f} runs/request {p['run_time_ns'] / p['run_cnt']:7.0f} ns/run "
                  f"{p['run_time_ns'] / requests:7.0f} ns/request")
PY
  done
  sysctl -qw kernel.bpf_stats_enabled="$previous"
fi
