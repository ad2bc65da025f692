// SPDX-License-Identifier: GPL-2.0
/* Socket-path capture of HTTP/1.x exchanges: cgroup_skb programs on the opted-in cgroups.
 *
 * The syscall tracepoints (http_capture.bpf.c) tax every process on the host: once one is
 * enabled, every syscall of every task takes the slow entry path. Programs attached to a
 * cgroup run only for the sockets that belong to it (a socket belongs to the cgroup it was
 * created in; an accepted socket inherits its listener's), so nothing else on the host pays
 * anything. They see TCP segments rather than syscalls:
 *
 * - ingress runs when a segment reaches the socket, egress when it leaves the IP layer;
 * - the exchange state lives in the socket's own storage (freed with the socket), and the
 *   same state machine and record as the syscall path (http_exchange.bpf.h) pair each request
 *   with its response, so one record per exchange reaches userspace;
 * - TCP sequence numbers skip retransmissions; a missing segment stops the capture of that
 *   exchange (its timing and sizes are still kept).
 *
 * Server timing is the first request segment's arrival to the last response segment's
 * departure; a client's is the mirror image. An exchange is sent when the next request
 * starts or the connection ends (FIN or RST either way). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_endian.h>
#include <bpf/bpf_core_read.h>

#include "edgetrace.h"

#include "http_exchange.bpf.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define IPPROTO_TCP 6
#define TCP_FLAG_FIN 0x01
#define TCP_FLAG_SYN 0x02
#define TCP_FLAG_RST 0x04

/* cgroup_skb verdicts: this path only watches, it never drops. */
#define PASS 1

struct {
  __uint(type, BPF_MAP_TYPE_SK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct conn_state);
} socket_conns SEC(".maps");

/* A request's first segment, copied to decide its context before anything of the exchange
 * is written to the socket's storage (see follow_phase_only). */
struct request_scratch {
  /* First: the hex decoder's index mask lets the verifier see writes up to 16 bytes past
   * the 8-byte parent id, which land in the bytes below. */
  struct server_decision decision;
  __u8 bytes[ET_MAX_CAPTURE + 128]; /* what struct head_scan may touch */
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct request_scratch);
} request_scratch SEC(".maps");

/* Where a segment's payload sits, and what the TCP header says about it. */
struct segment {
  __u32 payload_offset;
  __u32 payload_length;
  __u32 seq;
  __u32 ack;
  __u8 flags;
  __u8 has_ack;
};

static __always_inline bool read_segment(struct __sk_buff *skb, struct segment *seg) {
  /* cgroup_skb programs see the packet from its network header on, in both directions, and
   * the IP and TCP headers are always in the linear part: read them in place. */
  void *data = (void *)(long)skb->data;
  void *data_end = (void *)(long)skb->data_end;
  __u8 *version_byte = data;
  if ((void *)(version_byte + 1) > data_end) return false;
  __u32 ip_length;
  if ((*version_byte >> 4) == 4) {
    struct iphdr *ip = data;
    if ((void *)(ip + 1) > data_end || ip->protocol != IPPROTO_TCP) return false;
    ip_length = ip->ihl * 4;
  } else if ((*version_byte >> 4) == 6) {
    struct ipv6hdr *ip6 = data;
    /* Extension headers before TCP are rare on a connected stream: such segments are skipped. */
    if ((void *)(ip6 + 1) > data_end || ip6->nexthdr != IPPROTO_TCP) return false;
    ip_length = sizeof(*ip6);
  } else {
    return false;
  }
  if (ip_length < 20 || ip_length > 60) return false;
  struct tcphdr *tcp = data + ip_length;
  if ((void *)(tcp + 1) > data_end) return false;
  __u32 header_length = ip_length + tcp->doff * 4;
  seg->payload_offset = header_length;
  seg->payload_length = skb->len > header_length ? skb->len - header_length : 0;
  seg->seq = bpf_ntohl(tcp->seq);
  seg->ack = bpf_ntohl(tcp->ack_seq);
  seg->flags = (tcp->fin ? TCP_FLAG_FIN : 0) | (tcp->syn ? TCP_FLAG_SYN : 0) | (tcp->rst ? TCP_FLAG_RST : 0);
  seg->has_ack = tcp->ack;
  return true;
}

/* When this segment passes: on egress TCP has already stamped it with its departure time
 * (CLOCK_MONOTONIC, the clock bpf_ktime_get_ns() reads), which saves a clock read (~60 ns on
 * this VM); arriving segments are not stamped unless something asked for receive
 * timestamps, and those would be wall-clock. */
static __always_inline __u64 segment_time(const struct __sk_buff *skb, bool egress) {
  if (egress) {
    __u64 departure = skb->tstamp;
    if (departure) return departure;
  }
  return bpf_ktime_get_ns();
}

static __always_inline bool seq_before(__u32 a, __u32 b) { return (__s32)(a - b) < 0; }

/* Cuts off the part of a segment already seen (a retransmission), and reports a gap. Returns
 * false when nothing new is left. */
static __always_inline bool take_new_bytes(struct conn_state *conn, bool egress, struct segment *seg) {
  struct stream_position *position = egress ? &conn->egress : &conn->ingress;
  __u32 end = seg->seq + seg->payload_length;
  if (!position->known) {
    position->known = 1;
    position->next = end;
    return true;
  }
  __u32 next = position->next;
  if (!seq_before(next, end)) return false; /* all of it seen before */
  if (seq_before(seg->seq, next)) {
    __u32 skip = next - seg->seq;
    seg->payload_offset += skip;
    seg->payload_length -= skip;
    seg->seq = next;
  } else if (seg->seq != next) {
    /* Reordered or lost on the way in: the bytes in between were never seen here. */
    conn->gap = 1;
  }
  position->next = end;
  return true;
}

/* First bytes of the payload (up to 8), for recognising message starts. */
static __always_inline __u64 peek_payload(struct __sk_buff *skb, const struct segment *seg) {
  __u64 word = 0;
  if (seg->payload_length >= 8)
    bpf_skb_load_bytes(skb, seg->payload_offset, &word, 8);
  else if (seg->payload_length >= 4)
    bpf_skb_load_bytes(skb, seg->payload_offset, &word, 4);
  return word;
}

/* Appends the start of this payload to the captured prefix of one side. */
static __always_inline void capture_payload(struct conn_state *conn, bool response_side, struct __sk_buff *skb,
                                            const struct segment *seg) {
  if (conn->gap) return;
  __u32 have = response_side ? conn->exchange.response_captured : conn->exchange.request_captured;
  if (have >= capture_bytes) return;
  __u32 want = capture_bytes - have;
  if (want > seg->payload_length) want = seg->payload_length;
  if (want == 0 || want > ET_MAX_CAPTURE) return;
  if (response_side && have == 0) conn->exchange.response_offset = conn->exchange.request_captured;
  __u32 offset = (response_side ? conn->exchange.response_offset : 0) + have;
  /* 1..ET_MAX_CAPTURE in a form the verifier can follow. */
  __u32 length = bounded(want - 1, ET_MAX_CAPTURE - 1) + 1;
  if (bpf_skb_load_bytes(skb, seg->payload_offset, &conn->exchange.data[masked_offset(offset)], length)) {
    count(ET_STAT_CAPTURE_FAULTS);
    return;
  }
  if (response_side)
    conn->exchange.response_captured = have + want;
  else
    conn->exchange.request_captured = have + want;
}

/* A client span's context: the ids of a traceparent the application already sends, or a new
 * trace. (This path does not inject, so it has no server span to make it a child of.) */
__noinline int settle_client_context_from_capture(struct conn_state *conn) {
  if (!conn || conn->context_decided) return 0;
  struct et_http_exchange *ex = &conn->exchange;
  conn->context_decided = 1;
  struct head_scan scan = {.bytes = ex->data, .start = 0, .length = ex->request_captured};
  scan_head(&scan);
  __u8 flags = 0;
  if (scan.traceparent >= 0 &&
      parse_traceparent(ex->data, scan.traceparent, ex->request_captured, ex->trace_id, ex->span_id, &flags)) {
    ex->flags |= ET_EXCHANGE_CONTEXT_FROM_REQUEST;
    ex->trace_flags = flags & 1;
    return 0;
  }
  start_root_context(ex);
  return 0;
}

static __always_inline void read_addresses(struct bpf_sock *sk, struct et_http_exchange *ex) {
  ex->family = sk->family;
  ex->local_port = sk->src_port;
  ex->remote_port = bpf_ntohs(sk->dst_port);
  if (sk->family == AF_INET) {
    __u32 local = sk->src_ip4, remote = sk->dst_ip4;
    __builtin_memcpy(ex->local_addr, &local, 4);
    __builtin_memcpy(ex->remote_addr, &remote, 4);
  } else {
    /* Context fields: constant offsets only. */
    __u32 local[4] = {sk->src_ip6[0], sk->src_ip6[1], sk->src_ip6[2], sk->src_ip6[3]};
    __u32 remote[4] = {sk->dst_ip6[0], sk->dst_ip6[1], sk->dst_ip6[2], sk->dst_ip6[3]};
    __builtin_memcpy(ex->local_addr, local, 16);
    __builtin_memcpy(ex->remote_addr, remote, 16);
  }
}

/* Set before load: whether this kernel offers bpf_get_current_pid_tgid() to cgroup_skb
 * programs (6.18 does, 6.1 does not). When it does not, the verifier never visits the call,
 * since it follows this constant and drops the branch. */
const volatile __u8 has_pid_tgid_helper = 0;

/* Userspace knows processes by pid; a segment sent from a syscall runs in its sender's
 * context. (A retransmission from a timer does not, but it carries no new bytes.) The helper
 * costs a few ns; two bpf_probe_read_kernel() of the task cost ~100 ns (bench/overhead.sh
 * --kernel-detail). */
static __always_inline void note_sender(struct et_http_exchange *ex) {
  if (has_pid_tgid_helper) {
    __u64 pid_tgid = bpf_get_current_pid_tgid();
    ex->tgid = pid_tgid >> 32;
    ex->tid = (__u32)pid_tgid;
    return;
  }
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  ex->tgid = BPF_CORE_READ(task, tgid);
  ex->tid = BPF_CORE_READ(task, pid);
}

/* emit_exchange, after giving a client exchange the ids of a traceparent it already sends
 * (emit_exchange alone would start a new trace for it). */
static __always_inline void emit_socket_exchange(struct conn_state *conn, __u32 extra_flags) {
  if (conn->exchange.role == ET_ROLE_CLIENT) settle_client_context_from_capture(conn);
  emit_exchange(conn, extra_flags);
}

/* No hook sees a server go back to reading, so without this a keep-alive connection left
 * idle would hold its last exchange until the next request or the connection's end. A
 * response whose head gives its length is sent as soon as its last byte passes; the
 * exchange itself closes as before. */
static __always_inline void send_when_response_ends(struct conn_state *conn, bool response_begins) {
  if (!response_just_ended(conn, response_begins)) return;
  if (conn->exchange.role == ET_ROLE_CLIENT) settle_client_context_from_capture(conn);
  finish_exchange(conn, 0);
}

static __always_inline void end_of_connection(struct conn_state *conn) {
  if (conn->phase == PHASE_RESPONSE)
    emit_socket_exchange(conn, ET_EXCHANGE_CLOSED);
  else if (conn->phase == PHASE_REQUEST)
    emit_socket_exchange(conn, ET_EXCHANGE_CLOSED | ET_EXCHANGE_NO_RESPONSE);
  conn->protocol = PROTO_OTHER; /* nothing more to follow on this socket */
}

enum first_segment_verdict {
  HEAD_NOT_DECIDED = -1,
  HEAD_GOES_ON = 0,
  HEAD_SAMPLED = 1,
  HEAD_UNSAMPLED = 2,
  HEAD_NOT_A_REQUEST = 3,
};

/* Server side, at the segment that opens a request: the context decision, left in this
 * CPU's request_scratch, when this segment holds the whole head (or as much of it as is
 * captured). HEAD_GOES_ON when the head continues in later segments: the exchange is then
 * captured and decided as it arrives. Global (not inlined), like settle_server_context, so
 * that the verifier checks the head scan once. */
__noinline int decide_from_first_segment(struct __sk_buff *skb, __u32 payload_offset, __u32 payload_length,
                                         __u64 connection_id) {
  __u32 zero = 0;
  struct request_scratch *scratch = bpf_map_lookup_elem(&request_scratch, &zero);
  if (!skb || !scratch) return HEAD_GOES_ON;
  __u32 length = payload_length < capture_bytes ? payload_length : capture_bytes;
  if (length == 0 || length > ET_MAX_CAPTURE) return HEAD_GOES_ON;
  length = bounded(length - 1, ET_MAX_CAPTURE - 1) + 1;
  if (bpf_skb_load_bytes(skb, payload_offset, scratch->bytes, length)) return HEAD_GOES_ON;
  __u64 first_word = load_u64(scratch->bytes); /* bytes past length are never compared */
  if (!is_request_start(first_word, payload_length)) return HEAD_NOT_A_REQUEST;
  struct head_scan scan = {};
  if (!decide_server_context(scratch->bytes, 0, length, length >= capture_bytes, &scan, &scratch->decision,
                             connection_id))
    return HEAD_GOES_ON;
  return scratch->decision.trace_flags & 1 ? HEAD_SAMPLED : HEAD_UNSAMPLED;
}

static __always_inline const struct server_decision *first_segment_decision(void) {
  __u32 zero = 0;
  struct request_scratch *scratch = bpf_map_lookup_elem(&request_scratch, &zero);
  return scratch ? &scratch->decision : NULL;
}

/* An exchange head sampling turned down is never sent: all that matters is where it ends,
 * so that the next request is recognised. A run of them on a server connection writes
 * nothing but the request side's stream position (see struct conn_state). The request side
 * learns that the server has answered from the client's acknowledgement number: a client
 * sends its next request only after reading the response, and every segment it sends
 * acknowledges all it has received. The response side is left alone, so no line of the state
 * moves between the two CPUs, and its position is set again when the run ends
 * (leave_phase_only). The next request's decision is made from a per-CPU copy of its first
 * segment. */
static __always_inline void follow_phase_only(struct conn_state *conn, const struct segment *seg) {
  conn->ingress.ack_at_request = seg->ack;
  conn->exchange.sequence += 1;
  conn->protocol = PROTO_HTTP1;
  conn->phase = PHASE_REQUEST;
  conn->context_decided = 1;
  conn->phase_only = 1;
  conn->emitted = 0;
}

/* verdict: HEAD_NOT_DECIDED, or what decide_from_first_segment already said of this segment. */
static __always_inline void on_request_segment(struct conn_state *conn, struct __sk_buff *skb, const struct segment *seg,
                                               __u64 first_word, bool egress, int verdict) {
  bool opens_exchange = conn->phase != PHASE_REQUEST;
  const struct server_decision *decision = NULL;
  if (opens_exchange) {
    if (!is_request_start(first_word, seg->payload_length)) {
      if (conn->from_start && conn->exchange.sequence == 0 && seg->payload_length >= 4) {
        conn->protocol = PROTO_OTHER;
        count(ET_STAT_NON_HTTP_CONNECTIONS);
      }
      return;
    }
    if (verdict == HEAD_NOT_DECIDED)
      verdict = conn->exchange.role == ET_ROLE_SERVER
                    ? decide_from_first_segment(skb, seg->payload_offset, seg->payload_length, conn->exchange.connection_id)
                    : HEAD_GOES_ON;
    if (conn->phase == PHASE_RESPONSE || conn->phase_only) emit_socket_exchange(conn, 0);
    if (verdict == HEAD_UNSAMPLED) {
      follow_phase_only(conn, seg);
      return;
    }
    if (verdict == HEAD_SAMPLED) decision = first_segment_decision();
  } else if (exchange_unsampled(conn)) {
    return; /* more of a request that will only be counted */
  }
  __u64 now = segment_time(skb, egress);
  if (opens_exchange) {
    /* A segment arriving runs in whatever task the softirq interrupted, so only a sender is
     * known (note_sender). */
    begin_exchange(conn, now, 0, 0);
    if (egress) note_sender(&conn->exchange);
    if (decision) apply_server_decision(conn, decision);
  }
  capture_payload(conn, false, skb, seg);
  conn->exchange.request_end_ns = now;
  conn->exchange.request_bytes += seg->payload_length;
  if (conn->exchange.role == ET_ROLE_SERVER) settle_server_context(conn, false);
}

static __always_inline void on_response_segment(struct conn_state *conn, struct __sk_buff *skb, const struct segment *seg,
                                                __u64 first_word, bool egress) {
  __u64 now = segment_time(skb, egress);
  if (conn->phase == PHASE_IDLE) {
    /* Joined mid-stream with the request missed: keep the response, the request stays
     * unknown. */
    if (conn->from_start || conn->exchange.sequence != 0 || !is_response_start(first_word, seg->payload_length)) return;
    begin_exchange(conn, now, 0, 0);
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = now;
    if (egress) note_sender(&conn->exchange);
  } else if (conn->phase == PHASE_REQUEST) {
    if (conn->exchange.role == ET_ROLE_SERVER) {
      settle_server_context(conn, true);
      if (egress) note_sender(&conn->exchange);
    }
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = now;
  } else if (!exchange_unsampled(conn) &&
             is_response_start(first_word, seg->payload_length) && conn->exchange.response_captured > 0 &&
             !response_is_interim(conn)) {
    /* The next response of pipelined requests (see the syscall path). */
    __u64 request_start = conn->exchange.request_start_ns;
    __u64 request_end = conn->exchange.request_end_ns;
    emit_socket_exchange(conn, 0);
    begin_pipelined_continuation(conn, request_start);
    conn->exchange.request_end_ns = request_end;
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = now;
  }
  bool response_begins = conn->exchange.response_bytes == 0;
  if (!exchange_unsampled(conn)) capture_payload(conn, true, skb, seg);
  conn->exchange.response_end_ns = now;
  conn->exchange.response_bytes += seg->payload_length;
  if (!exchange_unsampled(conn)) send_when_response_ends(conn, response_begins);
}

/* The response side followed nothing during a run of phase-only exchanges: it resumes where
 * the client's acknowledgement says the server's stream has got to (everything the server
 * sent before this request, for a client that waits for each response). A server segment
 * sent beyond that point shows up as a gap, which only stops that exchange's capture. */
static __always_inline void leave_phase_only(struct conn_state *conn, const struct segment *seg) {
  conn->egress.next = seg->ack;
  conn->egress.known = 1;
}

/* A segment (new bytes, no FIN or RST) of a server connection in a run of phase-only
 * exchanges. Its response segments need nothing; a request segment opens the next exchange
 * once the server has answered, and only leaves the run when that exchange is to be
 * recorded or its head goes on past this segment. */
static __always_inline void on_phase_only_segment(struct conn_state *conn, struct __sk_buff *skb,
                                                  const struct segment *seg) {
  if (!seg->has_ack || seg->ack == conn->ingress.ack_at_request) return; /* more of the same request */
  int verdict = decide_from_first_segment(skb, seg->payload_offset, seg->payload_length, conn->exchange.connection_id);
  if (verdict == HEAD_NOT_A_REQUEST) return;
  if (verdict == HEAD_UNSAMPLED) {
    count(ET_STAT_UNSAMPLED); /* the exchange just answered */
    conn->ingress.ack_at_request = seg->ack;
    return;
  }
  leave_phase_only(conn, seg);
  /* The general path counts the answered exchange and opens this one with the decision. */
  conn->phase = PHASE_RESPONSE;
  on_request_segment(conn, skb, seg, peek_payload(skb, seg), false, verdict);
}

static __always_inline int on_segment(struct __sk_buff *skb, bool egress) {
  struct bpf_sock *sk = skb->sk;
  if (!sk) return PASS;
  sk = bpf_sk_fullsock(sk);
  if (!sk || sk->protocol != IPPROTO_TCP) return PASS;

  struct segment seg = {};
  if (!read_segment(skb, &seg)) return PASS;
  /* Bare ACKs carry nothing to follow unless they end the connection. */
  if (seg.payload_length == 0 && !(seg.flags & (TCP_FLAG_FIN | TCP_FLAG_RST))) return PASS;
  struct conn_state *conn = bpf_sk_storage_get(&socket_conns, sk, 0, 0);
  if (!conn) {
    /* Handshakes, bare ACKs and listeners never need state. */
    if (seg.payload_length == 0) return PASS;
    conn = bpf_sk_storage_get(&socket_conns, sk, 0, BPF_SK_STORAGE_GET_F_CREATE);
    if (!conn) {
      count(ET_STAT_CONN_TABLE_FULL);
      return PASS;
    }
    struct bpf_tcp_sock *tp = bpf_tcp_sock(sk);
    /* Nothing moved yet either way: these are the stream's very first bytes. */
    conn->from_start = tp && tp->bytes_received == 0 && tp->bytes_acked == 0;
    conn->exchange.record_type = ET_RECORD_HTTP1_EXCHANGE;
    conn->exchange.connection_id = kernel_random_u64();
    read_addresses(sk, &conn->exchange);
  }
  if (conn->protocol >= PROTO_OTHER) return PASS;

  if (seg.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) {
    /* The last data may ride on the FIN: take it first. */
    if (seg.payload_length == 0 || !take_new_bytes(conn, egress, &seg)) {
      end_of_connection(conn);
      return PASS;
    }
  } else {
    if (conn->phase_only && egress) return PASS; /* see follow_phase_only */
    if (seg.payload_length == 0 || !take_new_bytes(conn, egress, &seg)) return PASS;
    if (conn->phase_only) {
      on_phase_only_segment(conn, skb, &seg);
      return PASS;
    }
  }

  __u8 role = conn->exchange.role;
  bool response_side_now = is_response_side(conn, !egress);
  bool unsampled = exchange_unsampled(conn);
  if (unsampled && response_side_now && conn->phase != PHASE_IDLE && !(seg.flags & (TCP_FLAG_FIN | TCP_FLAG_RST))) {
    /* An unsampled exchange is never sent: only its phase matters, so that the next
     * request is recognised. Pipelined responses need no splitting either. */
    conn->phase = PHASE_RESPONSE;
    return PASS;
  }
  bool need_first_bytes = role == ET_ROLE_UNKNOWN || conn->phase == PHASE_IDLE ||
                          (!response_side_now && conn->phase == PHASE_RESPONSE) ||
                          (response_side_now && conn->phase == PHASE_RESPONSE && !unsampled);
  __u64 first_word = need_first_bytes ? peek_payload(skb, &seg) : 0;
  if (role == ET_ROLE_UNKNOWN) {
    /* Whoever sends a request is the client, whoever sends a response the server. */
    if (is_request_start(first_word, seg.payload_length))
      role = egress ? ET_ROLE_CLIENT : ET_ROLE_SERVER;
    else if (is_response_start(first_word, seg.payload_length))
      role = egress ? ET_ROLE_SERVER : ET_ROLE_CLIENT;
    else if (conn->from_start) {
      conn->protocol = PROTO_OTHER;
      count(ET_STAT_NON_HTTP_CONNECTIONS);
      return PASS;
    } else {
      return PASS;
    }
    conn->exchange.role = role;
  }

  if ((role == ET_ROLE_SERVER) != egress)
    on_request_segment(conn, skb, &seg, first_word, egress, HEAD_NOT_DECIDED);
  else
    on_response_segment(conn, skb, &seg, first_word, egress);

  if (seg.flags & (TCP_FLAG_FIN | TCP_FLAG_RST)) end_of_connection(conn);
  return PASS;
}

SEC("cgroup_skb/ingress")
int socket_ingress(struct __sk_buff *skb) { return on_segment(skb, false); }

SEC("cgroup_skb/egress")
int socket_egress(struct __sk_buff *skb) { return on_segment(skb, true); }
