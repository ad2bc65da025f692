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

/* Socket path: where one direction of the TCP stream has got to. */
struct stream_position {
  __u32 next;                /* sequence number just past the payload seen */
  /* Request side only: the acknowledgement number the current phase-only exchange's request
   * arrived with; once the client acknowledges more, the server has answered (see
   * follow_phase_only). */
  __u32 ack_at_request;
  __u8 known;                /* next is valid */
};

/* On the socket path the request side and the response side of a connection usually run
 * on different CPUs (loopback delivers a segment on its sender's CPU), so a cache line of
 * this state written on one side is fetched back by the other. A run of phase-only
 * (unsampled) exchanges therefore leaves the first 56 bytes, which with the storage
 * element's own map pointer make the line every lookup reads, unwritten; the response side
 * writes nothing at all, and the request side only its own stream_position, on a line of
 * its own at the end. */
struct conn_state {
  __u8 protocol;   /* enum conn_protocol */
  __u8 phase;      /* enum conn_phase */
  __u8 from_start; /* seen since accept/connect, so its first bytes are its first bytes */
  __u8 resolved;   /* socket type and addresses read */
  __u8 context_decided; /* trace context and sampling settled for the current exchange */
  /* Socket path: the current exchange was found unsampled at its first segment, so only
   * where it ends is followed and its record fields are stale (see follow_phase_only). */
  __u8 phase_only;
  __u16 scanned;        /* request bytes already searched for traceparent */
  __u8 gap;             /* socket path: a segment went missing, capture no more of this exchange */
  __u8 emitted;         /* the current exchange's record was sent (or counted) already */
  /* Server: the request bytes read so far are exactly one request head that announces no
   * body, so nothing more of this request is to come (settle_server_context). */
  __u8 request_whole;
  __u8 _pad1;
  /* The current response's whole length in bytes, as its head gives it, or 0 when the head
   * does not say or nobody asked (see note_response_length). */
  __u32 response_expected;
  /* Syscall path on the socket tracepoints: the struct sock this (tgid, fd) was found on, so
   * that a socket the fd names after a close the programs did not see starts afresh. */
  __u64 sock;
  struct et_http_exchange exchange;
  /* Never written: it only lets the verifier prove that a capture copy whose offset and
   * length it bounds separately stays inside the map value. */
  __u8 verifier_slack[ET_MAX_CAPTURE];
  struct stream_position ingress __attribute__((aligned(64)));
  struct stream_position egress __attribute__((aligned(64)));
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

/* Bytes this CPU has sent to the ring since it last asked how full the ring is. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} ring_pacing SEC(".maps");

/* Whether to wake the consumer for a record of `size` bytes: only once the ring holds
 * ring_wakeup_bytes, and asked only every sixteenth of that per CPU. The question reads the
 * consumer's position, a cache line the consumer writes from another CPU: ~45-75 ns a record
 * here (bench/overhead.sh --kernel-detail), while the consumer drains on a short timer
 * anyway. A wake-up is at most one sixteenth per CPU late. */
static __always_inline __u64 ring_wakeup_flag(__u64 size) {
  __u32 zero = 0;
  __u64 *since_query = bpf_map_lookup_elem(&ring_pacing, &zero);
  if (since_query) {
    *since_query += size;
    if (*since_query < (ring_wakeup_bytes >> 4)) return BPF_RB_NO_WAKEUP;
    *since_query = 0;
  }
  return bpf_ringbuf_query(&exchanges, BPF_RB_AVAIL_DATA) > ring_wakeup_bytes ? BPF_RB_FORCE_WAKEUP : BPF_RB_NO_WAKEUP;
}

static __always_inline void count(__u32 stat) {
  __u64 *value = bpf_map_lookup_elem(&et_stats, &stat);
  if (value) *value += 1;
}

/* Head sampling said no to the current exchange: it will only be counted, so nothing of it
 * needs capturing. */
static __always_inline bool exchange_unsampled(const struct conn_state *conn) {
  return conn->context_decided && (conn->phase_only || !(conn->exchange.trace_flags & 1));
}

/* Whether bytes moving this way (ingress: read, or arriving at the socket) are response
 * bytes: a server's outgoing ones, a client's incoming ones. */
static __always_inline bool is_response_side(const struct conn_state *conn, bool ingress) {
  __u8 role = conn->exchange.role;
  return role != ET_ROLE_UNKNOWN && (role == ET_ROLE_SERVER) != ingress;
}

static __always_inline __u32 masked_offset(__u32 offset) { return offset & (2 * ET_MAX_CAPTURE - 1); }

/* What a server request's head says about the server span's context. */
struct server_decision {
  __u8 trace_id[16]; /* a root's first 8 bytes are only drawn by apply_server_decision */
  __u8 parent_span_id[8];
  __u8 has_parent;
  __u8 trace_flags;
};

/* Joins a valid incoming traceparent, or starts a root (a present but invalid one starts a
 * root too, as W3C asks). A root draws only the 8 random bytes its sampling decision reads:
 * the rest of its ids are drawn once it is known to be recorded. Returns false while the
 * head is incomplete and may still bring a traceparent, unless complete says no more of it
 * will be looked at. */
static __always_inline bool decide_server_context(const __u8 *bytes, __u32 start, __u32 length, bool complete,
                                                  struct head_scan *scan, struct server_decision *decision,
                                                  __u64 connection_id) {
  scan->bytes = bytes;
  scan->start = start;
  scan->length = length;
  scan_head(scan);
  if (scan->traceparent >= 0) {
    __u8 flags = 0;
    if (parse_traceparent(bytes, scan->traceparent, length, decision->trace_id, decision->parent_span_id, &flags)) {
      decision->has_parent = 1;
      decision->trace_flags = sample(decision->trace_id, true, flags);
      return true;
    }
    complete = true;
  }
  if (!complete && scan->head_end < 0) return false;
  decision->has_parent = 0;
  random_bytes(decision->trace_id + 8, 1, connection_id);
  decision->trace_flags = sample(decision->trace_id, false, 0);
  return true;
}

static __always_inline void apply_server_decision(struct conn_state *conn, const struct server_decision *decision) {
  struct et_http_exchange *ex = &conn->exchange;
  __builtin_memcpy(ex->trace_id, decision->trace_id, 16);
  if (decision->has_parent) {
    __builtin_memcpy(ex->parent_span_id, decision->parent_span_id, 8);
    ex->flags |= ET_EXCHANGE_HAS_PARENT;
  } else {
    random_bytes(ex->trace_id, 1, ex->connection_id);
    __builtin_memset(ex->parent_span_id, 0, sizeof(ex->parent_span_id));
    ex->flags &= ~ET_EXCHANGE_HAS_PARENT;
  }
  random_bytes(ex->span_id, 1, ex->connection_id);
  ex->trace_flags = decision->trace_flags;
  conn->context_decided = 1;
}

/* Server side: once the request head is in (or can no longer tell us more), join the
 * incoming trace or start one, and decide sampling. */
/* Global (not inlined): the verifier checks it once, not at every call site. */
__noinline int settle_server_context(struct conn_state *conn, int force) {
  if (!conn || conn->context_decided) return 0;
  struct et_http_exchange *ex = &conn->exchange;
  struct head_scan scan = {};
  struct server_decision decision = {};
  bool complete = force || ex->request_captured >= capture_bytes;
  __u32 start = conn->scanned & ~7u;
  if (!decide_server_context(ex->data, start, ex->request_captured, complete, &scan, &decision,
                             ex->connection_id)) {
    /* Head still incomplete: look again from the last full line on the next read. */
    conn->scanned = scan.line_end > 0 ? ex->request_captured : 0;
    return 0;
  }
  apply_server_decision(conn, &decision);
  /* Only a scan of the whole head knows it announces no body. */
  conn->request_whole = start == 0 && scan.head_end >= 0 && !scan.announces_body &&
                        (__u32)scan.head_end == ex->request_captured && ex->request_bytes == ex->request_captured;
  return 0;
}

/* Sends the current exchange's record, or only counts it when head sampling said no; at
 * most once per exchange (a response whose head gave its length is sent as soon as it ends,
 * and the exchange is closed later). */
__noinline int finish_exchange(struct conn_state *conn, __u32 extra_flags) {
  if (!conn || conn->emitted) return 0;
  conn->emitted = 1;
  if (!conn->context_decided) {
    if (conn->exchange.role == ET_ROLE_SERVER)
      settle_server_context(conn, true);
    else
      start_root_context(&conn->exchange);
    conn->context_decided = 1;
  }
  if (exchange_unsampled(conn)) {
    count(ET_STAT_UNSAMPLED);
    return 0;
  }
  conn->exchange.flags |= extra_flags;
  if (!conn->from_start) conn->exchange.flags |= ET_EXCHANGE_JOINED_MIDSTREAM;
  /* Send only up to the last captured byte. */
  if (conn->exchange.response_captured == 0) conn->exchange.response_offset = conn->exchange.request_captured;
  __u64 size = ET_EXCHANGE_HEADER_SIZE + (__u64)conn->exchange.response_offset + conn->exchange.response_captured;
  if (size > sizeof(struct et_http_exchange)) size = sizeof(struct et_http_exchange);
  /* Waking the consumer per record costs a context switch per request; it drains on a short
   * timer instead, and is only woken when the buffer is filling up. */
  if (bpf_ringbuf_output(&exchanges, &conn->exchange, size, ring_wakeup_flag(size)))
    count(ET_STAT_RINGBUF_DROPS);
  else
    count(ET_STAT_EXCHANGES_EMITTED);
  return 0;
}

/* Closes the current exchange: the connection goes back to idle, and the record is sent
 * unless it was already. */
static __always_inline void emit_exchange(struct conn_state *conn, __u32 extra_flags) {
  conn->phase = PHASE_IDLE;
  /* Sent already as its response ended (note_response_length), or decided and turned down:
   * settled here without the call, which costs ~40 ns a request when every exchange is
   * recorded (bench/overhead.sh --kernel-detail). */
  if (conn->emitted) return;
  if (exchange_unsampled(conn)) {
    conn->emitted = 1;
    count(ET_STAT_UNSAMPLED);
    return;
  }
  finish_exchange(conn, extra_flags);
}

/* `tid`: the thread that reads the request (server) or writes it (client), 0 when not known
 * here. */
static __always_inline void begin_exchange(struct conn_state *conn, __u64 start_ns, __u32 flags, __u32 tid) {
  struct et_http_exchange *ex = &conn->exchange;
  ex->flags = flags;
  ex->sequence += 1;
  ex->tid = tid;
  ex->request_start_ns = start_ns;
  ex->request_end_ns = start_ns;
  ex->response_start_ns = 0;
  ex->response_end_ns = 0;
  ex->request_bytes = 0;
  ex->response_bytes = 0;
  ex->request_captured = 0;
  ex->response_captured = 0;
  conn->context_decided = 0;
  conn->phase_only = 0;
  conn->scanned = 0;
  conn->gap = 0;
  conn->emitted = 0;
  conn->request_whole = 0;
  conn->response_expected = 0;
  conn->protocol = PROTO_HTTP1;
  conn->phase = PHASE_REQUEST;
}

/* The next exchange of a pipelined batch, opened when its response starts: its request lies
 * further on in the request bytes the previous record carried, read by the same thread. It
 * shares the batch's decision (only a recorded exchange is split this way; see
 * start_recorded_root_context). */
static __always_inline void begin_pipelined_continuation(struct conn_state *conn, __u64 request_start_ns) {
  begin_exchange(conn, request_start_ns, ET_EXCHANGE_PIPELINED, conn->exchange.tid);
  start_recorded_root_context(&conn->exchange);
  conn->context_decided = 1;
}

static __always_inline bool response_is_interim(struct conn_state *conn) {
  /* "HTTP/1.1 1xx": the status' first digit sits at offset 9 of the response prefix. */
  __u32 at = masked_offset(conn->exchange.response_offset + 9);
  return conn->exchange.response_captured > 9 && conn->exchange.data[at] == '1';
}

/* Sets response_expected from the response head at the start of the response prefix: the
 * head plus its Content-Length, or the head alone for a response without a body (to HEAD,
 * 204, 304). Left 0 where the head does not say or cannot be trusted to: chunked or
 * close-delimited bodies, an interim 1xx, a pipelined continuation (its request, further on
 * in the request bytes, is not looked at), a request not captured, or a head longer than the
 * captured prefix. Such a response is sent when the next request starts or the connection
 * ends. Returns 1 when more of the response's bytes could not change the answer, 0 while
 * its head is not all captured. Global (not inlined): the verifier checks the scan once. */
__noinline int note_response_length(struct conn_state *conn) {
  if (!conn) return 1;
  struct et_http_exchange *ex = &conn->exchange;
  conn->response_expected = 0;
  __u32 have = ex->response_captured;
  if (have > ET_MAX_CAPTURE || ex->request_captured < 5 || (ex->flags & ET_EXCHANGE_PIPELINED)) return 1;
  if (have < 16) return 0;
  const __u8 *bytes = &ex->data[bounded(ex->response_offset, 2 * ET_MAX_CAPTURE - 1)];
  __u8 class = bytes[9], tens = bytes[10], units = bytes[11];
  if (class == '1') return 1;
  bool head_request = ex->data[0] == 'H' && ex->data[1] == 'E' && ex->data[2] == 'A' && ex->data[3] == 'D' &&
                      ex->data[4] == ' ';
  bool no_body = head_request || ((class == '2' || class == '3') && tens == '0' && units == '4');
  struct response_scan scan = {.bytes = bytes, .length = have, .head_end = -1, .content_length = -1};
  bpf_loop(SCAN_STEPS, scan_response_step, &scan, 0);
  if (scan.head_end < 0) return 0;
  __u32 head = scan.head_end;
  if (no_body) {
    conn->response_expected = head;
    return 1;
  }
  if (scan.transfer_coded || scan.content_length < 0) return 1;
  __s64 body = parse_length_value(bytes, scan.content_length, head);
  if (body < 0 || body > 0xffffffffll - head) return 1;
  conn->response_expected = head + body;
  return 1;
}

/* Whether the current response has just ended, by the length its head gives (read when
 * its first bytes arrive, see note_response_length). Exactly at the end only: bytes that
 * run on into a pipelined response are left to the usual split. */
static __always_inline bool response_just_ended(struct conn_state *conn, bool response_begins) {
  if (response_begins) note_response_length(conn);
  return conn->response_expected && conn->exchange.response_bytes == conn->response_expected;
}

#endif /* EDGETRACE_HTTP_EXCHANGE_BPF_H */
