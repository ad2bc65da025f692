/* The map through which the capture program hands traceparent plans to the sk_msg injector.
 * Both BPF objects include this one definition; the loader makes them share one map
 * (bpf_map__reuse_fd), so the definitions must not drift apart. */
#ifndef EDGETRACE_INJECT_PLANS_BPF_H
#define EDGETRACE_INJECT_PLANS_BPF_H

#include "edgetrace.h"

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64); /* pid_tgid of the sending thread */
  __type(value, struct et_inject_plan);
} inject_plans SEC(".maps");

#endif
