#!/bin/bash
# Runs inside the qemu guest (see run.sh) on the host's read-only root: makes the writable
# and virtual filesystems the agent needs, then checks this kernel's capabilities and traces
# a real server. Prints "VM RESULT: PASS" or "VM RESULT: FAIL" and powers off.
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
build=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^build=//p')
modules=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^modules=//p')
# This kernel's modules (tc's clsact lives in sch_ingress) come from the unpacked package.
[[ -n $modules ]] && mount --bind "$modules" /lib/modules
for d in /tmp /run /var/tmp /var/lib /root; do mount -t tmpfs tmpfs "$d"; done
mount -t bpf bpf /sys/fs/bpf
mount -t tracefs tracefs /sys/kernel/tracing
mount -t securityfs securityfs /sys/kernel/security
mount -t cgroup2 cgroup2 /sys/fs/cgroup
ip link set lo up 2>/dev/null || true
# Debian's kernels default to perf_event_paranoid=3, which (a Debian patch) refuses
# perf_event_open without CAP_SYS_ADMIN; the capability suite's CAP_BPF+CAP_PERFMON test
# needs the upstream rule.
sysctl -qw kernel.perf_event_paranoid=2
echo "vm: kernel $(uname -r)"

failures=0
check() { local name=$1; shift; if "$@"; then echo "vm: PASS $name"; else echo "vm: FAIL $name"; failures=$((failures + 1)); fi; }

"$build/userspace/cli/edgetrace" doctor >/tmp/doctor.txt 2>&1
sed 's/^/vm: doctor| /' /tmp/doctor.txt
check "doctor says kprobes load here" grep -qE "^ +kprobe +yes" /tmp/doctor.txt
check "doctor says fentry loads here" grep -qE "^ +fentry +yes" /tmp/doctor.txt
# The doctor names the hooks the agent will use: fentry, which this kernel has (kprobes are
# listed as working, but the agent has no programs for them).
check "doctor chooses fentry" grep -qE "syscall capture +fentry" /tmp/doctor.txt
check "capability suite" "$build/tests/capabilities/capabilities_tests" --gtest_brief=1

# Each capture path on this older kernel: trace a real server, expect its span.
trace_server() {
  local name=$1 port=$2; shift 2
  "$build/userspace/cli/edgetrace" run --log-level debug --output json "$@" -- \
    python3 -m http.server "$port" --bind 127.0.0.1 >"/tmp/spans-$port.json" 2>"/tmp/agent-$port.log" &
  local agent=$!
  # Under software emulation the verifier alone takes minutes (tens of them for the socket
  # path): wait until the server answers, the agent gives up, or 40 minutes pass.
  local deadline=$((SECONDS + 2400))
  echo "vm: $name: loading (waiting up to $((deadline - SECONDS)) s)"
  until curl -s --max-time 10 -o /dev/null "http://127.0.0.1:$port/"; do
    ((SECONDS < deadline)) && kill -0 "$agent" 2>/dev/null || break
    sleep 2
  done
  echo "vm: $name: done waiting after ${SECONDS} s since boot"
  curl -s --max-time 60 -o /dev/null "http://127.0.0.1:$port/vm?x=1" || echo "vm: $name: the /vm request failed"
  sleep 1.5
  # SIGTERM, not SIGINT: a background job of a non-interactive shell starts with SIGINT
  # ignored, python keeps it ignored, and the agent passes the signal on and waits for it.
  kill -TERM "$agent"
  for _ in $(seq 180); do kill -0 "$agent" 2>/dev/null || break; sleep 1; done
  if kill -0 "$agent" 2>/dev/null; then
    echo "vm: $name: the agent still runs 180 s after SIGTERM: killed"
    kill -9 "$agent"
  fi
  wait "$agent"
  grep -v "^$" "/tmp/agent-$port.log" | grep -B12 -m1 "END PROG LOAD LOG" | sed "s/^/vm: $name| /"
  grep -m1 "sender pid from" "/tmp/agent-$port.log" | sed "s/^/vm: $name| /"
  tail -3 "/tmp/agent-$port.log" | sed "s/^/vm: $name| /"
  check "$name captures a span on $(uname -r)" grep -q '"url.path":"/vm"' "/tmp/spans-$port.json"
}
# The syscall path on each of its three hook sets: fentry by default here, then the two
# fallbacks the project VM uses.
# The socket path first: its two programs verify much faster than the syscall path's.
trace_server "socket path" 18081 --capture-path sockets --no-inject
trace_server "syscall path" 18080
check "syscall path attached fentry" grep -q "capture programs attached: fentry/fexit" /tmp/agent-18080.log
trace_server "syscall path on BTF raw tracepoints" 18083 --syscall-hooks btf_tracepoints
check "BTF raw tracepoints attached" grep -q "capture programs attached: BTF raw tracepoints" /tmp/agent-18083.log
trace_server "syscall path on syscall tracepoints" 18082 --syscall-hooks tracepoints
check "syscall tracepoints attached" grep -q "capture programs attached: syscall tracepoints" /tmp/agent-18082.log

# VM_GTEST_FILTER=... (run.sh): those integration tests too, on this kernel's default hooks.
gtest_filter=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^gtest=//p')
if [[ -n $gtest_filter ]]; then
  # Every agent start verifies the programs anew, half a minute under emulation: waits x10.
  # Streamed, so that a run cut short by VM_TIMEOUT still shows how far it got.
  EDGETRACE_TEST_TIME_SCALE=10 "$build/tests/integration/integration_tests" --gtest_filter="$gtest_filter" \
    2>&1 | grep --line-buffered -E "^\[ +(RUN|FAILED|PASSED|OK) +\]|Failure|Expected|Which is|Value of" | sed 's/^/vm: gtest| /'
  check "integration tests $gtest_filter" test "${PIPESTATUS[0]}" -eq 0
fi

# VM_BENCH="<bench/syscall_tax.sh arguments>" (run.sh): that benchmark too, on this kernel.
bench_args=$(tr ' ' '\n' </proc/cmdline | sed -n 's/^bench=//p' | tr ',' ' ')
if [[ -n $bench_args ]]; then
  # shellcheck disable=SC2086 # the arguments are words
  bash "$(dirname "$0")/../bench/syscall_tax.sh" $bench_args 2>&1 | sed 's/^/vm: bench| /'
fi

if ((failures == 0)); then echo "VM RESULT: PASS"; else echo "VM RESULT: FAIL ($failures)"; fi
poweroff -f
