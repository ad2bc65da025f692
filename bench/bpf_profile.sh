#!/usr/bin/env bash
# Where the BPF time of a traced nginx goes, by program and by source line: nginx under
# `edgetrace run` on CPU 1, wrk on CPU 0, `perf record` on CPU 1 (nginx's), and each sample
# inside a BPF program joined to the source line the JIT recorded for that address
# (bench/bpf_lines/bpf_line_table). Shares are of all CPU-1 samples, so they read directly as
# a share of nginx's CPU.
#
#   bench/bpf_profile.sh [--build DIR] [--ratio R] [--duration S] [--top N] [-- EDGETRACE_RUN_FLAGS...]
#
# --ratio sets traceidratio head sampling (default 1); flags after -- go to `edgetrace run`
# (e.g. --syscall-hooks btf_tracepoints). perf adds its own cost: read shares, not req/s.
set -euo pipefail
source "$(dirname "$0")/lib/nginx_hello.sh"

build="$(cd "$(dirname "$0")/.." && pwd)/build" ratio=1 duration=5 top=30 run_flags=()
while (($#)); do
  case "$1" in
    --build) build=$2; shift 2 ;;
    --ratio) ratio=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --top) top=$2; shift 2 ;;
    --) shift; run_flags=("$@"); break ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
done
edgetrace="$build/userspace/cli/edgetrace" line_table="$build/bench/bpf_lines/bpf_line_table"
for tool in "$edgetrace" "$line_table"; do [[ -x $tool ]] || { echo "build first ($tool missing)" >&2; exit 1; }; done
command -v perf >/dev/null && command -v wrk >/dev/null || { echo "needs perf and wrk (scripts/setup.sh)" >&2; exit 1; }
(($(nproc) >= 2)) || { echo "needs 2 CPUs: nginx and wrk are pinned apart" >&2; exit 1; }

work=$(mktemp -d /tmp/edgetrace-profile-XXXXXX)
agent=
trap '[[ -n $agent ]] && kill -INT "$agent" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
port=$(free_port)
write_nginx_hello_conf "$work" "$port"
OTEL_TRACES_SAMPLER=traceidratio OTEL_TRACES_SAMPLER_ARG=$ratio "$edgetrace" run --output json "${run_flags[@]}" -- \
  taskset -c 1 nginx -p "$work" -c "$work/nginx.conf" -g "daemon off;" >/dev/null 2>"$work/agent.log" &
agent=$!
wait_for_port "$port" || { echo "nginx did not start:" >&2; cat "$work/agent.log" >&2; exit 1; }
taskset -c 0 wrk -t1 -c50 -d2s "http://127.0.0.1:$port/" >/dev/null # warm-up
# Our programs are named on_*, et_* and the subprograms they call; the table is read while
# they are loaded, since addresses are those of this load.
"$line_table" on_ et_ >"$work/lines"
perf record -q -F 10000 -C 1 -o "$work/perf.data" -- taskset -c 0 wrk -t1 -c50 -d"${duration}s" "http://127.0.0.1:$port/" |
  awk '/Requests\/sec/ {print "wrk under perf: " $2 " req/s"}'
perf script -i "$work/perf.data" -F ip,sym 2>/dev/null >"$work/samples"

python3 - "$work/lines" "$work/samples" "$top" <<'PY'
import bisect, collections, re, sys
lines_file, samples_file, top = sys.argv[1], sys.argv[2], int(sys.argv[3])
table = []
for row in open(lines_file):
    address, program, source = row.rstrip("\n").split(" ", 2)
    table.append((int(address, 16), source.strip()))
table.sort()
addresses = [a for a, _ in table]
total = 0
by_program, by_line, helpers = collections.Counter(), collections.Counter(), collections.Counter()
helper_names = re.compile(r"^(bpf_|__bpf_|htab_|__htab_|copy_from_user_nofault|__pi_memcpy|ktime_get|read_tsc)")
for row in open(samples_file):
    parts = row.split(None, 1)
    if len(parts) < 2:
        continue
    total += 1
    ip, symbol = int(parts[0], 16), parts[1].strip()
    if symbol.startswith("bpf_prog_"):
        by_program[re.sub(r"^bpf_prog_[0-9a-f]+_", "", symbol)] += 1
        i = bisect.bisect_right(addresses, ip) - 1
        by_line[table[i][1][:100] if i >= 0 else "?"] += 1
    elif helper_names.match(symbol):
        helpers[symbol] += 1
if not total:
    sys.exit("no samples")
share = lambda n: f"{100 * n / total:6.2f}%"
print(f"{total} samples on nginx's CPU; BPF program bodies {share(sum(by_program.values()))}, "
      f"kernel functions they call and the clock {share(sum(helpers.values()))} (the clock also serves TCP)")
print("\nby program:")
for name, n in by_program.most_common():
    print(f"  {share(n)} {name}")
print("\nkernel functions:")
for name, n in helpers.most_common(12):
    print(f"  {share(n)} {name}")
print(f"\nby BPF source line (top {top}):")
for source, n in by_line.most_common(top):
    print(f"  {share(n)} {source}")
PY
