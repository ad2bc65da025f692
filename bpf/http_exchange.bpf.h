/* The per-connection HTTP/1 exchange state both capture paths keep (the syscall
 * tracepoints in http_capture.bpf.c and the cgroup socket programs in socket_capture.bpf.c):
 * idle -> request -> response, the server-side trace context decision, and the one ring
 * buffer record per request/response pair. */
#ifndef EDGETRACE_HTTP_EXCHANGE_BPF_H
#define EDGETRACE_HTTP_EXCHANGE_BPF_H

#include "edgetrace.h"
#include "http_head.bpf.h"

/* Set before load. A power of two no larger than ET_MAX_CAPTURE. */
const volatile __u32 capture_bytes = ET_DEFAULT_CAPTURE;
/* Set before load: wake the consumer once this much data waits (a quarter of the ring). */
const volatile __u64 ring_wakeup_bytes = 2 << 20;

enum conn_phase { PHASE_IDLE = 0, PHASE_REQUEST = 1, PHASE_RESPONSE = 2 };
enum conn_protocol { PROTO_UNKNOWN = 0, PROTO_HTTP1 = 1, PROTO_OTHER = 2, PROTO_NOT_TCP = 3 };

struct conn_state {
  __u8 protocol;   /* enum conn_protocol */
  __u8 phase;      /* enum conn_phase */
  __u8 from_start; /* seen since accept/connect, so its first bytes are its first bytes */
  __u8 resolved;   /* socket type and addresses read */
  __u8 context_decided; /* trace context and sampling settled for the current exchange */
  __u8 _pad0;
  __u16 scanned;        /* request bytes already searched for traceparent */
  /* Socket path only (bpf/socket_capture.bpf.c): the TCP sequence numbers just past the
   * payload seen in each direction, to skip retransmissions and notice gaps. */
  __u32 ingress_next;
  __u32 egress_next;
  __u8 ingress_known;
  __u8 egress_known;
  __u8 gap;             /* a segment went missing: capture no more of this exchange */
  __u8 _pad1[5];
  struct et_http_exchange exchange;
  /* Never written: it only lets the verifier prove that a capture copy whose offset and
   * length it bounds separately stays inside the map value. */
  __u8 verifier_slack[ET_MAX_CAPTURE];
};

struct {
  __uint(type, BPF_MAP_TYPE_RINGBUF);
  __uint(max_entries, 8 << 20); /* resized by userspace before load */
} exchanges SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, ET_STAT_COUNT);
  __type(key, __u32);
  __type(value, __u64);
} et_stats SEC(".maps");

static __always_inline void count(__u32 stat) {
  __u64 *value = bpf_map_lookup_elem(&et_stats, &stat);
  if (value) *value += 1;
}

/* Head sampling said no to the current exchange: it will only be counted, so nothing of it
 * needs capturing. */
static __always_inline bool exchange_unsampled(const struct conn_state *conn) {
  return conn->context_decided && !(conn->exchange.trace_flags & 1);
}

static __always_inline __u32 masked_offset(__u32 offset) { return offset & (2 * ET_MAX_CAPTURE - 1); }

/* Server side: once the request head is in (or can no longer tell us more), join the
 * incoming trace or start one, and decide sampling. */
/* Global (not inlined): the verifier checks it once, not at every call site. */
__noinline int settle_server_context(struct conn_state *conn, int force) {
  if (!conn || conn->context_decided) return 0;
  struct et_http_exchange *ex = &conn->exchange;
  struct head_scan scan = {.bytes = ex->data, .start = conn->scanned & ~7u, .length = ex->request_captured};
  scan_head(&scan);
  if (scan.traceparent >= 0) {
    __u8 flags = 0;
    if (parse_traceparent(ex->data, scan.traceparent, ex->request_captured, ex->trace_id, ex->parent_span_id, &flags)) {
      random_bytes(ex->span_id, 2);
      ex->flags |= ET_EXCHANGE_HAS_PARENT;
      ex->trace_flags = sample(ex->trace_id, true, flags);
      conn->context_decided = 1;
      return 0;
    }
    /* Present but invalid: a new trace, as W3C asks. */
    force = true;
  }
  if (force || scan.head_end >= 0 || ex->request_captured >= capture_bytes) {
    start_root_context(ex);
    conn->context_decided = 1;
    return 0;
  }
  /* Head still incomplete: look again from the last full line on the next read. */
  conn->scanned = scan.line_end > 0 ? ex->request_captured : 0;
  return 0;
}

__noinline int emit_exchange(struct conn_state *conn, __u32 extra_flags) {
  if (!conn) return 0;
  if (!conn->context_decided) {
    if (conn->exchange.role == ET_ROLE_SERVER)
      settle_server_context(conn, true);
    else
      start_root_context(&conn->exchange);
    conn->context_decided = 1;
  }
  conn->phase = PHASE_IDLE;
  if (!(conn->exchange.trace_flags & 1)) {
    count(ET_STAT_UNSAMPLED);
    return 0;
  }
  conn->exchange.flags |= extra_flags;
  if (!conn->from_start) conn->exchange.flags |= ET_EXCHANGE_JOINED_MIDSTREAM;
  /* Send only up to the last captured response byte. */
  __u64 size = ET_EXCHANGE_HEADER_SIZE + (__u64)capture_bytes + conn->exchange.response_captured;
  if (size > sizeof(struct et_http_exchange)) size = sizeof(struct et_http_exchange);
  /* Waking the consumer per record costs a context switch per request; it drains on a short
   * timer instead, and is only woken when the buffer is filling up. */
  __u64 wakeup = bpf_ringbuf_query(&exchanges, BPF_RB_AVAIL_DATA) > ring_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
  if (bpf_ringbuf_output(&exchanges, &conn->exchange, size, wakeup))
    count(ET_STAT_RINGBUF_DROPS);
  else
    count(ET_STAT_EXCHANGES_EMITTED);
  return 0;
}

static __always_inline void begin_exchange(struct conn_state *conn, __u64 start_ns, __u32 flags) {
  struct et_http_exchange *ex = &conn->exchange;
  ex->flags = flags;
  ex->sequence += 1;
  ex->tid = (__u32)bpf_get_current_pid_tgid();
  ex->request_start_ns = start_ns;
  ex->request_end_ns = start_ns;
  ex->response_start_ns = 0;
  ex->response_end_ns = 0;
  ex->request_bytes = 0;
  ex->response_bytes = 0;
  ex->request_captured = 0;
  ex->response_captured = 0;
  conn->context_decided = 0;
  conn->scanned = 0;
  conn->gap = 0;
  conn->protocol = PROTO_HTTP1;
  conn->phase = PHASE_REQUEST;
}

static __always_inline bool response_is_interim(struct conn_state *conn) {
  /* "HTTP/1.1 1xx": the status' first digit sits at offset 9 of the response prefix. */
  __u32 at = masked_offset(capture_bytes + 9);
  return conn->exchange.response_captured > 9 && conn->exchange.data[at] == '1';
}

#endif /* EDGETRACE_HTTP_EXCHANGE_BPF_H */
