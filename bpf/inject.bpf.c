// SPDX-License-Identifier: GPL-2.0
/* Kernel-side W3C traceparent injection into outgoing HTTP/1.x requests.
 *
 * A sockops program on each opted-in cgroup puts every outgoing TCP connection (IPv4 and
 * IPv6) into a sockhash; the sk_msg verdict program attached to that sockhash then runs
 * inside every send on those connections (tcp_bpf_sendmsg), once per chunk of at most one
 * scatterlist. The capture program decides, at syscall entry, whether a send starts a request
 * that should carry a traceparent and leaves a plan keyed by the sender's pid_tgid; this
 * program consumes it.
 *
 * Safety rule: an injected header must never corrupt application traffic. Every check runs
 * before anything is inserted (including that TCP will take the bytes up to the end of the
 * header without waiting); after the insertion the bytes are written, or popped again, or as
 * a last resort the chunk is dropped. See docs/injection.md for the whole argument. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_core_read.h>

#include "edgetrace.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define SEND_SHUTDOWN 2
#define TCP_ESTABLISHED 1
#define TCP_CLOSE_WAIT 8

/* Upper bound on the send-queue accounting of one new skb beyond its payload (its truesize
 * without data is about 1 KiB on x86-64; doubled for safety). */
#define SKB_OVERHEAD_BOUND 4096

/* Largest first piece made contiguous again after the insertion (an order-4 allocation; the
 * pieces tcp_bpf builds come from 32 KiB page fragments). */
#define MERGE_LIMIT 65536

#include "inject_plans.bpf.h"

/* Outgoing connections of opted-in cgroups, keyed by socket cookie: a cookie is never reused,
 * so a new connection cannot collide with a stale entry. Closed sockets leave by themselves. */
struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} client_sockets SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, ET_INJECT_STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} et_inject_stats SEC(".maps");

static __always_inline void count(__u32 stat) {
  __u64 *value = bpf_map_lookup_elem(&et_inject_stats, &stat);
  if (value) *value += 1;
}

SEC("sockops")
int et_track_client_connections(struct bpf_sock_ops *skops) {
  if (skops->op != BPF_SOCK_OPS_ACTIVE_ESTABLISHED_CB) return 1;
  if (skops->family != AF_INET && skops->family != AF_INET6) return 1;
  __u64 cookie = bpf_get_socket_cookie(skops);
  if (bpf_sock_hash_update(skops, &client_sockets, &cookie, BPF_NOEXIST) == 0)
    count(ET_INJECT_STAT_SOCKETS_TRACKED);
  else
    count(ET_INJECT_STAT_SOCKHASH_FAILED);
  return 1;
}

static __always_inline bool is_lower_hex(__u8 c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }

/* "traceparent: 00-" 32 hex "-" 16 hex "-" 2 hex "\r\n": a malformed plan is never sent. */
static __always_inline bool header_is_well_formed(const struct et_inject_plan *plan) {
  const char prefix[] = "traceparent: 00-";
  for (int i = 0; i < 16; i++)
    if (plan->header[i] != (__u8)prefix[i]) return false;
  for (int i = 16; i < 68; i++) {
    const __u8 c = plan->header[i];
    if (i == 48 || i == 65) {
      if (c != '-') return false;
    } else if (!is_lower_hex(c)) {
      return false;
    }
  }
  return plan->header[68] == '\r' && plan->header[69] == '\n';
}

/* True when TCP will take the first `needed` bytes of this chunk without waiting for send
 * buffer or memory: only a wait can end tcp_bpf_push early (non-blocking socket, signal),
 * and an early end inside or before the inserted header would misreport the byte count. */
static __always_inline bool send_path_has_room(struct sk_msg_md *msg, __u32 needed) {
  struct bpf_sock *bsk = msg->sk;
  if (!bsk) return false;
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(bsk);
  if (!tp) return false;
  struct sock *sk = &tp->inet_conn.icsk_inet.sk;
  const __u8 state = sk->__sk_common.skc_state;
  if (state != TCP_ESTABLISHED && state != TCP_CLOSE_WAIT) return false;
  if (sk->sk_err || (sk->sk_shutdown & SEND_SHUTDOWN)) return false;

  /* TCP checks the send queue against sk_sndbuf before every new skb (tcp_sendmsg_locked):
   * the first `needed` bytes fill at most needed/mss + 2 new skbs, and must all be queued
   * before the check can fail. */
  const __u32 mss = tp->mss_cache;
  if (mss < 64) return false;
  const __s64 queued = sk->sk_wmem_queued;
  const __s64 sndbuf = sk->sk_sndbuf;
  const __s64 growth = (__s64)needed + (__s64)(needed / mss + 2) * SKB_OVERHEAD_BOUND;
  if (queued + growth >= sndbuf) return false;

  __u32 lowat = tp->notsent_lowat;
  if (lowat == 0) lowat = BPF_CORE_READ(sk, __sk_common.skc_net.net, ipv4.sysctl_tcp_notsent_lowat);
  const __u64 not_sent = (__u32)(tp->write_seq - tp->snd_nxt);
  if (not_sent + needed >= lowat) return false;

  unsigned long pressure = 0;
  unsigned long *pressure_flag = BPF_CORE_READ(sk, __sk_common.skc_prot, memory_pressure);
  if (pressure_flag && bpf_probe_read_kernel(&pressure, sizeof(pressure), pressure_flag) != 0) return false;
  return pressure == 0;
}

/* tcp_bpf hands TCP each scatterlist piece of a message with a separate call. A small send
 * whose bytes straddle the end of the task's page fragment arrives in two pieces; the first
 * leaves as a short segment and Nagle holds the second until the peer ACKs, which a peer
 * waiting for a whole request delays by up to 40 ms. Plain TCP would have sent one segment.
 * Making such a message one piece again (pulling only moves bytes) restores that. */
static __always_inline void coalesce_small_message(struct sk_msg_md *msg) {
  const __u32 size = msg->size;
  const __u32 first_piece = (__u32)((long)msg->data_end - (long)msg->data);
  if (first_piece < size && size <= MERGE_LIMIT && bpf_msg_pull_data(msg, 0, size, 0) == 0)
    count(ET_INJECT_STAT_COALESCED);
}

SEC("sk_msg")
int et_inject_traceparent(struct sk_msg_md *msg) {
  const __u64 pid_tgid = bpf_get_current_pid_tgid();
  struct et_inject_plan *stored = bpf_map_lookup_elem(&inject_plans, &pid_tgid);
  if (!stored) {
    count(ET_INJECT_STAT_NO_PLAN);
    coalesce_small_message(msg);
    return SK_PASS;
  }
  /* One use: later chunks of the same send, and later sends, never see this plan. Copied
   * first because a preallocated hash element may be reused as soon as it is deleted. */
  struct et_inject_plan plan;
  __builtin_memcpy(&plan, stored, sizeof(plan));
  bpf_map_delete_elem(&inject_plans, &pid_tgid);

  const __u32 size = msg->size;
  const __u32 offset = plan.insert_offset;
  /* Before any pull, data..data_end spans the first scatterlist element. */
  const __u32 first_piece = (__u32)((long)msg->data_end - (long)msg->data);
  /* The first chunk of a send holds its first `size` bytes; a later chunk of the same send
   * never sees the plan (consumed above). A larger message is not the planned send. */
  if (size > plan.send_length) {
    count(ET_INJECT_STAT_SIZE_MISMATCH);
    return SK_PASS;
  }
  /* The request line is at least "X / HTTP/1.1\r\n". An offset equal to the size (a send
   * holding just the request line) appends: kernels before the late-2024 push_data fixes
   * refuse that with -EINVAL, having changed nothing (counted as push_failed). */
  if (offset < 10 || offset > size) {
    count(ET_INJECT_STAT_BEYOND_CHUNK);
    return SK_PASS;
  }
  if (!header_is_well_formed(&plan)) {
    count(ET_INJECT_STAT_BAD_PLAN);
    return SK_PASS;
  }

  /* Pulling only linearises bytes that are already there: content never changes. */
  if (bpf_msg_pull_data(msg, 0, sizeof(plan.first_bytes), 0) != 0) {
    count(ET_INJECT_STAT_CONTENT_MISMATCH);
    return SK_PASS;
  }
  __u8 *data = msg->data;
  __u8 *data_end = msg->data_end;
  if (data + sizeof(plan.first_bytes) > data_end) {
    count(ET_INJECT_STAT_CONTENT_MISMATCH);
    return SK_PASS;
  }
  for (int i = 0; i < (int)sizeof(plan.first_bytes); i++) {
    if (data[i] != plan.first_bytes[i]) {
      count(ET_INJECT_STAT_CONTENT_MISMATCH);
      return SK_PASS;
    }
  }
  if (bpf_msg_pull_data(msg, offset - 2, offset, 0) != 0) {
    count(ET_INJECT_STAT_CONTENT_MISMATCH);
    return SK_PASS;
  }
  data = msg->data;
  data_end = msg->data_end;
  if (data + 2 > data_end || data[0] != '\r' || data[1] != '\n') {
    count(ET_INJECT_STAT_CONTENT_MISMATCH);
    return SK_PASS;
  }

  if (!send_path_has_room(msg, offset + ET_TRACEPARENT_HEADER_LEN)) {
    count(ET_INJECT_STAT_UNSAFE_SOCKET);
    return SK_PASS;
  }

  /* bpf_msg_push_data either inserts or returns an error having changed nothing. */
  if (bpf_msg_push_data(msg, offset, ET_TRACEPARENT_HEADER_LEN, 0) != 0) {
    count(ET_INJECT_STAT_PUSH_FAILED);
    return SK_PASS;
  }
  /* From here the message holds 70 unwritten bytes: they are written, or removed again, or
   * (last resort, never seen) the chunk is dropped so they cannot reach the peer.
   *
   * First choice: make the message (or, for a large one, its first piece with the header)
   * one piece again: left as [request line][header][rest], the request line would leave as a
   * short segment of its own and Nagle would hold the rest (see coalesce_small_message). */
  __u32 merge_end = 0;
  if (size <= MERGE_LIMIT - ET_TRACEPARENT_HEADER_LEN)
    merge_end = size + ET_TRACEPARENT_HEADER_LEN; /* the whole message */
  else if (offset <= first_piece && first_piece <= MERGE_LIMIT - ET_TRACEPARENT_HEADER_LEN)
    merge_end = first_piece + ET_TRACEPARENT_HEADER_LEN; /* the stock first piece, plus the header */
  if (merge_end != 0 && bpf_msg_pull_data(msg, 0, merge_end, 0) == 0) {
    data = msg->data;
    data_end = msg->data_end;
    if (offset < MERGE_LIMIT - ET_TRACEPARENT_HEADER_LEN) { /* bounded for the verifier */
      __u8 *header = data + offset;
      if (header + ET_TRACEPARENT_HEADER_LEN <= data_end) {
        __builtin_memcpy(header, plan.header, ET_TRACEPARENT_HEADER_LEN);
        count(ET_INJECT_STAT_INJECTED);
        return SK_PASS;
      }
    }
  }
  /* Otherwise the inserted element alone: pulling exactly one element needs no allocation. */
  if (bpf_msg_pull_data(msg, offset, offset + ET_TRACEPARENT_HEADER_LEN, 0) == 0) {
    data = msg->data;
    data_end = msg->data_end;
    if (data + ET_TRACEPARENT_HEADER_LEN <= data_end) {
      __builtin_memcpy(data, plan.header, ET_TRACEPARENT_HEADER_LEN);
      count(ET_INJECT_STAT_INJECTED);
      count(ET_INJECT_STAT_UNMERGED);
      return SK_PASS;
    }
  }
  if (bpf_msg_pop_data(msg, offset, ET_TRACEPARENT_HEADER_LEN, 0) == 0) {
    count(ET_INJECT_STAT_WRITE_FAILED);
    return SK_PASS;
  }
  count(ET_INJECT_STAT_DROPPED);
  return SK_DROP;
}
