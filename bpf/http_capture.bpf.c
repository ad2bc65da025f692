// SPDX-License-Identifier: GPL-2.0
/* Syscall-tracepoint capture of HTTP/1.x exchanges for opted-in processes.
 *
 * Every program starts with the opt-in check, because syscall tracepoints fire for every
 * process on the host. For a traced connection the kernel keeps a small state machine
 * (idle -> request -> response) and sends userspace one record per request/response pair,
 * never one per syscall. See docs/architecture.md for the state machine. */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>
#include <bpf/bpf_tracing.h>
#include <bpf/bpf_core_read.h>
#include <bpf/bpf_endian.h>

#include "edgetrace.h"

char LICENSE[] SEC("license") = "GPL";

#define AF_INET 2
#define AF_INET6 10
#define S_IFMT 00170000
#define S_IFSOCK 0140000
#define SOCK_STREAM 1
#define IPPROTO_TCP 6
#define MAX_IOVECS 4

/* Set before load. A power of two no larger than ET_MAX_CAPTURE. */
const volatile __u32 capture_bytes = ET_DEFAULT_CAPTURE;
/* Set before load: wake the consumer once this much data waits (a quarter of the ring). */
const volatile __u64 ring_wakeup_bytes = 2 << 20;

/* Head sampler (enum et_sampler) and its rejection threshold on the trace id's low 56 bits:
 * a root trace is sampled iff those bits, read big-endian, are >= the threshold. */
const volatile __u32 sampler_mode = ET_SAMPLER_PARENTBASED_ALWAYS_ON;
const volatile __u64 sampler_threshold = 0;
const volatile __u32 inject_enabled = 1;

/* Changed by userspace at run time through the mapped .bss. */
volatile __u32 opt_in_cgroup_levels; /* bit L: some opted-in cgroup sits at level L */
volatile __u32 opt_in_pid_count;

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u64); /* cgroup v2 id */
  __type(value, __u8);
} traced_cgroups SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 1024);
  __type(key, __u32); /* tgid */
  __type(value, __u8);
} traced_pids SEC(".maps");

enum io_kind { IO_BUFFER = 0, IO_IOVEC = 1, IO_MSGHDR = 2 };

/* Arguments of a read or write in flight, from syscall entry to exit. */
struct io_args {
  __u64 buffer; /* the buffer, the iovec array or the msghdr */
  __u64 enter_ns;
  __u32 fd;
  __u32 kind; /* enum io_kind */
  __u32 iovec_count;
  __u8 ingress;
  __u8 pending; /* set at entry, cleared at exit: cheaper than deleting the entry */
  __u8 planned; /* an injection plan was written for this send */
  __u8 _pad;
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 16384);
  __type(key, __u64); /* pid_tgid */
  __type(value, struct io_args);
} active_io SEC(".maps");

enum conn_phase { PHASE_IDLE = 0, PHASE_REQUEST = 1, PHASE_RESPONSE = 2 };
enum conn_protocol { PROTO_UNKNOWN = 0, PROTO_HTTP1 = 1, PROTO_OTHER = 2, PROTO_NOT_TCP = 3 };

struct conn_key {
  __u32 tgid;
  __u32 fd;
};

struct conn_state {
  __u8 protocol;   /* enum conn_protocol */
  __u8 phase;      /* enum conn_phase */
  __u8 from_start; /* seen since accept/connect, so its first bytes are its first bytes */
  __u8 resolved;   /* socket type and addresses read */
  __u8 context_decided; /* trace context and sampling settled for the current exchange */
  __u8 _pad0;
  __u16 scanned;        /* request bytes already searched for traceparent */
  struct et_http_exchange exchange;
  /* Never written: it only lets the verifier prove that a capture copy whose offset and
   * length it bounds separately stays inside the map value. */
  __u8 verifier_slack[ET_MAX_CAPTURE];
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 4096); /* resized by userspace before load */
  __type(key, struct conn_key);
  __type(value, struct conn_state);
} conns SEC(".maps");

/* Always zero: the template for a new connection (too large for the BPF stack). */
struct {
  __uint(type, BPF_MAP_TYPE_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct conn_state);
} zero_conn SEC(".maps");

/* The server exchange a thread is serving, so that requests it sends on meanwhile become
 * child spans. Keyed by thread id; inherited by threads and processes it starts. */
struct thread_context {
  struct conn_key server;
  __u32 sequence;
};

struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, struct thread_context);
} thread_contexts SEC(".maps");

/* Shared with the sk_msg injector (bpf/inject.bpf.c); see struct et_inject_plan. */
#include "inject_plans.bpf.h"

/* Room to look at the head of an outgoing request before it is sent. */
#define SEND_SCAN_BYTES 512
struct send_scratch {
  __u8 bytes[1024 + 128]; /* what struct head_scan may touch */
};
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct send_scratch);
} send_scratch SEC(".maps");

/* A plan is built here rather than on the stack: with the scan's callback frame the stack
 * would pass 512 bytes on older kernels (6.1 counts it so). */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct et_inject_plan);
} plan_scratch SEC(".maps");

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

static __always_inline bool current_is_traced(void) {
  __u32 levels = opt_in_cgroup_levels;
  if (levels) {
    for (int level = 1; level < ET_MAX_CGROUP_LEVEL; level++) {
      if (!(levels & (1u << level))) continue;
      __u64 id = bpf_get_current_ancestor_cgroup_id(level);
      if (bpf_map_lookup_elem(&traced_cgroups, &id)) return true;
    }
  }
  if (opt_in_pid_count) {
    __u32 tgid = bpf_get_current_pid_tgid() >> 32;
    if (bpf_map_lookup_elem(&traced_pids, &tgid)) return true;
  }
  return false;
}

/* The struct sock behind a TCP socket fd of the current process, or NULL. */
static __always_inline struct sock *tcp_sock_of_fd(__u32 fd) {
  struct task_struct *task = (struct task_struct *)bpf_get_current_task();
  struct fdtable *fdt = BPF_CORE_READ(task, files, fdt);
  if (!fdt) return NULL;
  if (fd >= BPF_CORE_READ(fdt, max_fds)) return NULL;
  struct file **fds = BPF_CORE_READ(fdt, fd);
  struct file *file = NULL;
  if (bpf_probe_read_kernel(&file, sizeof(file), &fds[fd]) || !file) return NULL;
  umode_t mode = BPF_CORE_READ(file, f_inode, i_mode);
  if ((mode & S_IFMT) != S_IFSOCK) return NULL;
  struct socket *sock = BPF_CORE_READ(file, private_data);
  if (!sock) return NULL;
  struct sock *sk = BPF_CORE_READ(sock, sk);
  if (!sk) return NULL;
  if (BPF_CORE_READ(sk, sk_type) != SOCK_STREAM || BPF_CORE_READ(sk, sk_protocol) != IPPROTO_TCP)
    return NULL;
  return sk;
}

static __always_inline void read_addresses(struct sock *sk, struct et_http_exchange *ex) {
  __u16 family = BPF_CORE_READ(sk, __sk_common.skc_family);
  ex->family = family;
  ex->local_port = BPF_CORE_READ(sk, __sk_common.skc_num);
  ex->remote_port = bpf_ntohs(BPF_CORE_READ(sk, __sk_common.skc_dport));
  /* The destination's type sets how many bytes BPF_CORE_READ_INTO copies: read whole
   * addresses, never into a byte array. */
  if (family == AF_INET) {
    __u32 local = 0, remote = 0;
    BPF_CORE_READ_INTO(&local, sk, __sk_common.skc_rcv_saddr);
    BPF_CORE_READ_INTO(&remote, sk, __sk_common.skc_daddr);
    __builtin_memcpy(ex->local_addr, &local, sizeof(local));
    __builtin_memcpy(ex->remote_addr, &remote, sizeof(remote));
  } else {
    struct in6_addr local = {}, remote = {};
    BPF_CORE_READ_INTO(&local, sk, __sk_common.skc_v6_rcv_saddr);
    BPF_CORE_READ_INTO(&remote, sk, __sk_common.skc_v6_daddr);
    __builtin_memcpy(ex->local_addr, &local, sizeof(local));
    __builtin_memcpy(ex->remote_addr, &remote, sizeof(remote));
  }
}

static __always_inline struct conn_state *new_conn(struct conn_key *key, __u8 role, __u8 from_start) {
  __u32 zero = 0;
  struct conn_state *blank = bpf_map_lookup_elem(&zero_conn, &zero);
  if (!blank) return NULL;
  if (bpf_map_update_elem(&conns, key, blank, BPF_ANY)) {
    count(ET_STAT_CONN_TABLE_FULL);
    return NULL;
  }
  struct conn_state *conn = bpf_map_lookup_elem(&conns, key);
  if (!conn) return NULL;
  conn->from_start = from_start;
  conn->exchange.record_type = ET_RECORD_HTTP1_EXCHANGE;
  conn->exchange.role = role;
  conn->exchange.tgid = key->tgid;
  conn->exchange.fd = key->fd;
  conn->exchange.connection_id = ((__u64)bpf_get_prandom_u32() << 32) | bpf_get_prandom_u32();
  conn->exchange.capture = capture_bytes;
  return conn;
}

/* The state of a connection about to carry data, creating it for a socket that was open
 * before tracing began. Returns NULL for anything that is not a TCP socket we can follow. */
static __always_inline struct conn_state *conn_for_data(__u32 tgid, __u32 fd) {
  struct conn_key key = {.tgid = tgid, .fd = fd};
  struct conn_state *conn = bpf_map_lookup_elem(&conns, &key);
  if (!conn) {
    conn = new_conn(&key, ET_ROLE_UNKNOWN, 0);
    if (!conn) return NULL;
  }
  if (!conn->resolved) {
    conn->resolved = 1;
    struct sock *sk = tcp_sock_of_fd(fd);
    if (!sk) {
      conn->protocol = PROTO_NOT_TCP;
      return NULL;
    }
    read_addresses(sk, &conn->exchange);
  }
  if (conn->protocol >= PROTO_OTHER) return NULL;
  return conn;
}

/* First bytes of the data moved by this call (up to 8), for recognising message starts. */
static __always_inline __u64 peek_first_bytes(const struct io_args *io) {
  __u64 buffer = io->buffer;
  if (io->kind != IO_BUFFER) {
    struct iovec iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), (void *)buffer)) return 0;
    buffer = (__u64)iov.iov_base;
  }
  __u64 word = 0;
  bpf_probe_read_user(&word, sizeof(word), (void *)buffer);
  return word;
}

/* Little-endian byte patterns of the message starts the kernel recognises; userspace's
 * looks_like_http_request_start() accepts the same set. */
#define WORD4(a, b, c, d) ((__u64)(a) | (__u64)(b) << 8 | (__u64)(c) << 16 | (__u64)(d) << 24)
#define MASK4 0xffffffffull
#define MASK5 0xffffffffffull
#define MASK7 0xffffffffffffffull

static __always_inline bool is_request_start(__u64 w, __s64 len) {
  if (len < 4) return false;
  __u64 w4 = w & MASK4;
  if (w4 == WORD4('G', 'E', 'T', ' ') || w4 == WORD4('P', 'U', 'T', ' ')) return true;
  if (len < 5) return false;
  __u64 w5 = w & MASK5;
  if (w5 == (WORD4('P', 'O', 'S', 'T') | (__u64)' ' << 32) ||
      w5 == (WORD4('H', 'E', 'A', 'D') | (__u64)' ' << 32))
    return true;
  if (w4 == WORD4('D', 'E', 'L', 'E') || w4 == WORD4('P', 'A', 'T', 'C') ||
      w4 == WORD4('O', 'P', 'T', 'I') || w4 == WORD4('C', 'O', 'N', 'N') ||
      w4 == WORD4('T', 'R', 'A', 'C'))
    return true;
  return false;
}

static __always_inline bool is_response_start(__u64 w, __s64 len) {
  return len >= 7 && (w & MASK7) == (WORD4('H', 'T', 'T', 'P') | (__u64)'/' << 32 |
                                     (__u64)'1' << 40 | (__u64)'.' << 48);
}

/* ---- Trace context: W3C traceparent in, head sampling, traceparent out. ---- */

#define TRACEPARENT_NAME_LEN 12
#define TRACEPARENT_VALUE_LEN 55
#define TRACEPARENT_WORD (WORD4('t', 'r', 'a', 'c') | WORD4('e', 'p', 'a', 'r') << 32)
#define ENT_COLON_WORD WORD4('e', 'n', 't', ':')
#define NEWLINES 0x0a0a0a0a0a0a0a0aull
#define LOW_BITS 0x0101010101010101ull
#define HIGH_BITS 0x8080808080808080ull

/* Masks an index so the verifier can bound it. The empty asm hides what the compiler knows
 * of the value, so it cannot drop a mask it believes redundant after a range check. */
static __always_inline __u32 bounded(__u32 value, __u32 mask) {
  asm volatile("" : "+r"(value));
  return value & mask;
}

struct head_scan {
  const __u8 *bytes; /* a map value with at least 1024 + 128 readable bytes */
  __u32 start;       /* first offset to look at */
  __u32 length;      /* bytes that are valid */
  __u32 cursor;      /* where the next step looks */
  __s32 line_end;    /* offset just past the first "\n", or -1 */
  __s32 head_end;    /* offset just past the blank line ending the head, or -1 */
  __s32 traceparent; /* offset of the first traceparent field's value, or -1 */
};

static __always_inline void look_at_newline(struct head_scan *scan, const __u8 *bytes, __u32 at) {
  if (scan->line_end < 0) scan->line_end = at + 1;
  if (at + 1 < scan->length && bytes[bounded(at + 1, 1023)] == '\n') {
    scan->head_end = at + 2;
    return;
  }
  if (at + 2 < scan->length && bytes[bounded(at + 1, 1023)] == '\r' && bytes[bounded(at + 2, 1023)] == '\n') {
    scan->head_end = at + 3;
    return;
  }
  if (scan->traceparent >= 0 || at + 1 + TRACEPARENT_NAME_LEN > scan->length) return;
  __u32 name = bounded(at + 1, 1023);
  __u64 word = 0;
  __u32 tail = 0;
  __builtin_memcpy(&word, &bytes[name], 8);
  __builtin_memcpy(&tail, &bytes[name + 8], 4);
  /* |0x20 folds ASCII letters to lower case and maps no other byte onto one. */
  if ((word | 0x2020202020202020ull) == TRACEPARENT_WORD && (tail | 0x00202020u) == ENT_COLON_WORD)
    scan->traceparent = at + 1 + TRACEPARENT_NAME_LEN;
}

/* One step finds the next newline, 8 bytes at a time, and looks at the line after it. */
static long scan_head_step(__u32 index, struct head_scan *scan) {
  __u32 at = scan->cursor;
  if (at >= scan->length || at >= 1024) return 1;
  const __u8 *bytes = scan->bytes;
  __u64 word = 0;
  __builtin_memcpy(&word, &bytes[bounded(at, 1023)], 8);
  __u64 x = word ^ NEWLINES;
  /* Flags the high bit of every zero byte of x; the lowest flag is always exact. */
  __u64 found = (x - LOW_BITS) & ~x & HIGH_BITS;
  __u32 valid = scan->length - at;
  if (valid < 8) found &= (1ull << (valid * 8)) - 1;
  if (!found) {
    scan->cursor = at + 8;
    return 0;
  }
  __u64 lowest = found & -found;
  __u32 k = 0;
  if (!(lowest & 0xffffffffull)) {
    k += 4;
    lowest >>= 32;
  }
  if (!(lowest & 0xffff)) {
    k += 2;
    lowest >>= 16;
  }
  if (!(lowest & 0xff)) k += 1;
  __u32 pos = at + k;
  look_at_newline(scan, bytes, bounded(pos, 1023));
  if (scan->head_end >= 0) return 1;
  scan->cursor = pos + 1;
  return 0;
}

/* At most one step per 8 bytes plus one per line: 512 bytes of head in 128 steps. */
#define SCAN_STEPS 128

static __always_inline void scan_head(struct head_scan *scan) {
  scan->cursor = scan->start;
  scan->line_end = -1;
  scan->head_end = -1;
  scan->traceparent = -1;
  bpf_loop(SCAN_STEPS, scan_head_step, scan, 0);
}

static __always_inline bool is_lower_hex(__u8 c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); }
static __always_inline __u8 hex_value(__u8 c) { return c <= '9' ? c - '0' : c - 'a' + 10; }

struct hex_decode {
  const __u8 *bytes;
  __u32 at;
  __u8 *out;
  __u8 invalid;
  __u8 any_nonzero;
};

static long decode_hex_byte(__u32 index, struct hex_decode *d) {
  /* d->at + 32 < the valid length <= 1024 (checked by the caller). */
  __u32 at = bounded(d->at, 1023) + bounded(2 * index, 63);
  __u8 high = d->bytes[at], low = d->bytes[at + 1];
  if (!is_lower_hex(high) || !is_lower_hex(low)) {
    d->invalid = 1;
    return 1;
  }
  __u8 value = hex_value(high) << 4 | hex_value(low);
  d->out[index & 15] = value;
  d->any_nonzero |= value;
  return 0;
}

/* W3C Trace Context: lowercase hex only; version ff invalid; all-zero ids invalid; version
 * 00 has exactly 55 characters; a higher version is read by its first four fields. */
static __always_inline bool parse_traceparent(const __u8 *bytes, __u32 value, __u32 length, __u8 trace_id[16],
                                              __u8 parent_id[8], __u8 *flags) {
  for (int i = 0; i < 4 && value < length; i++) {
    __u8 c = bytes[bounded(value, 1023)];
    if (c != ' ' && c != '\t') break;
    value++;
  }
  if (value + TRACEPARENT_VALUE_LEN >= length || value > 1024) return false;
  value = bounded(value, 1023);
  __u8 v0 = bytes[value], v1 = bytes[value + 1];
  if (!is_lower_hex(v0) || !is_lower_hex(v1) || (v0 == 'f' && v1 == 'f')) return false;
  if (bytes[value + 2] != '-' || bytes[value + 35] != '-' || bytes[value + 52] != '-') return false;
  __u8 f0 = bytes[value + 53], f1 = bytes[value + 54], after = bytes[value + 55];
  if (!is_lower_hex(f0) || !is_lower_hex(f1)) return false;
  bool version_zero = v0 == '0' && v1 == '0';
  bool ends = after == '\r' || after == '\n' || after == ' ' || after == '\t';
  if (!(ends || (!version_zero && after == '-'))) return false;

  struct hex_decode d = {.bytes = bytes, .at = value + 3, .out = trace_id};
  bpf_loop(16, decode_hex_byte, &d, 0);
  if (d.invalid || !d.any_nonzero) return false;
  d.at = value + 36;
  d.out = parent_id;
  d.any_nonzero = 0;
  bpf_loop(8, decode_hex_byte, &d, 0);
  if (d.invalid || !d.any_nonzero) return false;
  *flags = hex_value(f0) << 4 | hex_value(f1);
  return true;
}

static __always_inline void random_bytes(__u8 *out, int words) {
  for (int i = 0; i < words; i++) {
    __u32 r = bpf_get_prandom_u32();
    __builtin_memcpy(out + 4 * i, &r, 4);
  }
}

/* OpenTelemetry consistent sampling: the trace id's last 7 bytes, big-endian, against the
 * rejection threshold. The same rule as userspace/sampling/consistent_probability.h. */
static __always_inline bool ratio_sampled(const __u8 trace_id[16]) {
  __u64 randomness = 0;
  for (int i = 9; i < 16; i++) randomness = randomness << 8 | trace_id[i];
  return randomness >= sampler_threshold;
}

static __always_inline __u8 sample(const __u8 trace_id[16], bool has_parent, __u8 parent_flags) {
  switch (sampler_mode) {
    case ET_SAMPLER_ALWAYS_ON: return 1;
    case ET_SAMPLER_ALWAYS_OFF: return 0;
    case ET_SAMPLER_TRACEIDRATIO: return ratio_sampled(trace_id);
    case ET_SAMPLER_PARENTBASED_ALWAYS_OFF: return has_parent ? (parent_flags & 1) : 0;
    case ET_SAMPLER_PARENTBASED_TRACEIDRATIO: return has_parent ? (parent_flags & 1) : ratio_sampled(trace_id);
    default: return has_parent ? (parent_flags & 1) : 1;
  }
}

/* A new trace: random ids (all 56 low bits random, so fit for consistent sampling). */
static __always_inline void start_root_context(struct et_http_exchange *ex) {
  random_bytes(ex->trace_id, 4);
  random_bytes(ex->span_id, 2);
  __builtin_memset(ex->parent_span_id, 0, sizeof(ex->parent_span_id));
  ex->flags &= ~ET_EXCHANGE_HAS_PARENT;
  ex->trace_flags = sample(ex->trace_id, false, 0);
}

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

static __always_inline void remember_server_thread(struct conn_state *conn) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct thread_context *current = bpf_map_lookup_elem(&thread_contexts, &tid);
  if (current) {
    /* Keep-alive: same thread, usually the same connection; rewrite in place. */
    current->server.tgid = conn->exchange.tgid;
    current->server.fd = conn->exchange.fd;
    current->sequence = conn->exchange.sequence;
    return;
  }
  struct thread_context context = {
      .server = {.tgid = conn->exchange.tgid, .fd = conn->exchange.fd},
      .sequence = conn->exchange.sequence,
  };
  bpf_map_update_elem(&thread_contexts, &tid, &context, BPF_ANY);
}

/* The server exchange this thread is serving right now, if any. */
static __always_inline struct conn_state *serving_exchange(void) {
  __u32 tid = (__u32)bpf_get_current_pid_tgid();
  struct thread_context *context = bpf_map_lookup_elem(&thread_contexts, &tid);
  if (!context) return NULL;
  struct conn_state *server = bpf_map_lookup_elem(&conns, &context->server);
  if (!server || server->phase == PHASE_IDLE || server->exchange.sequence != context->sequence ||
      server->exchange.role != ET_ROLE_SERVER)
    return NULL;
  return server;
}

static __always_inline bool same_trace_id(const __u8 a[16], const __u8 b[16]) {
  __u64 a0, a1, b0, b1;
  __builtin_memcpy(&a0, a, 8);
  __builtin_memcpy(&a1, a + 8, 8);
  __builtin_memcpy(&b0, b, 8);
  __builtin_memcpy(&b1, b + 8, 8);
  return a0 == b0 && a1 == b1;
}

static __always_inline char hex_digit(__u8 v) { return v < 10 ? '0' + v : 'a' + v - 10; }

static __always_inline void write_hex(__u8 *out, const __u8 *in, int n) {
  for (int i = 0; i < n; i++) {
    out[2 * i] = hex_digit(in[i] >> 4);
    out[2 * i + 1] = hex_digit(in[i] & 15);
  }
}

/* Client side, at syscall entry of a send that starts a request: choose the client span's
 * context (child of the server exchange this thread serves, or a new root) and, when the
 * head is complete in this send and carries no traceparent, plan the injection. */
__noinline int settle_client_context(struct conn_state *conn, __u64 buffer, __u64 length) {
  if (!conn) return 0;
  struct et_http_exchange *ex = &conn->exchange;
  conn->context_decided = 1;
  __u32 zero = 0;
  struct send_scratch *scratch = bpf_map_lookup_elem(&send_scratch, &zero);
  if (!scratch) {
    start_root_context(ex);
    return 0;
  }
  __u32 scanned = length < SEND_SCAN_BYTES ? length : SEND_SCAN_BYTES;
  if (bpf_probe_read_user(scratch->bytes, scanned & (SEND_SCAN_BYTES * 2 - 1), (void *)buffer)) scanned = 0;
  struct head_scan scan = {.bytes = scratch->bytes, .start = 0, .length = scanned};
  scan_head(&scan);

  __u8 flags = 0;
  if (scan.traceparent >= 0 &&
      parse_traceparent(scratch->bytes, scan.traceparent, scanned, ex->trace_id, ex->span_id, &flags)) {
    /* The application propagates context itself: this span takes the ids it sent. */
    ex->flags |= ET_EXCHANGE_CONTEXT_FROM_REQUEST;
    ex->trace_flags = flags & 1;
    struct conn_state *server = serving_exchange();
    if (server && same_trace_id(server->exchange.trace_id, ex->trace_id)) {
      __builtin_memcpy(ex->parent_span_id, server->exchange.span_id, 8);
      ex->flags |= ET_EXCHANGE_HAS_PARENT;
    }
    return 0;
  }

  struct conn_state *server = serving_exchange();
  if (server) {
    settle_server_context(server, true);
    __builtin_memcpy(ex->trace_id, server->exchange.trace_id, 16);
    __builtin_memcpy(ex->parent_span_id, server->exchange.span_id, 8);
    random_bytes(ex->span_id, 2);
    ex->flags |= ET_EXCHANGE_HAS_PARENT;
    ex->trace_flags = server->exchange.trace_flags & 1;
  } else {
    start_root_context(ex);
  }

  /* Inject only into a head we can see whole: the request line and the blank line are in
   * this send, and no traceparent anywhere in it. Otherwise the bytes pass untouched. */
  if (!inject_enabled || scan.traceparent >= 0 || scan.line_end < 0 || scan.head_end < 0) return 0;
  struct et_inject_plan *plan = bpf_map_lookup_elem(&plan_scratch, &zero);
  if (!plan) return 0;
  plan->insert_offset = scan.line_end;
  plan->send_length = length;
  __builtin_memcpy(plan->first_bytes, scratch->bytes, 8);
  __builtin_memcpy(plan->header, "traceparent: 00-", 16);
  write_hex(&plan->header[16], ex->trace_id, 16);
  plan->header[48] = '-';
  write_hex(&plan->header[49], ex->span_id, 8);
  plan->header[65] = '-';
  plan->header[66] = '0';
  plan->header[67] = ex->trace_flags & 1 ? '1' : '0';
  plan->header[68] = '\r';
  plan->header[69] = '\n';
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  if (bpf_map_update_elem(&inject_plans, &pid_tgid, plan, BPF_ANY) == 0) {
    ex->flags |= ET_EXCHANGE_INJECTED;
    count(ET_STAT_INJECT_PLANNED);
  }
  return 0;
}

static __always_inline __u32 masked_offset(__u32 offset) { return offset & (2 * ET_MAX_CAPTURE - 1); }

static __always_inline void copy_chunk(struct conn_state *conn, __u32 offset, __u64 length, __u64 source) {
  if (length > ET_MAX_CAPTURE) length = ET_MAX_CAPTURE;
  if (length == 0) return;
  /* Provably 1..ET_MAX_CAPTURE for older verifiers (6.1) that lose the clamp above. */
  __u32 bytes = bounded((__u32)length - 1, ET_MAX_CAPTURE - 1) + 1;
  if (bpf_probe_read_user(&conn->exchange.data[masked_offset(offset)], bytes, (void *)source))
    count(ET_STAT_CAPTURE_FAULTS);
}

/* Appends up to the capture size of this call's bytes to one side of the exchange. */
static __always_inline void capture(struct conn_state *conn, bool response_side, const struct io_args *io, __u64 length) {
  /* An unsampled exchange is only counted: nothing of it needs copying. */
  if (conn->context_decided && !(conn->exchange.trace_flags & 1)) return;
  __u32 cap = capture_bytes;
  __u32 have = response_side ? conn->exchange.response_captured : conn->exchange.request_captured;
  if (have >= cap) return;
  __u32 room = cap - have;
  __u64 want = length < room ? length : room;
  __u32 offset = (response_side ? cap : 0) + have;

  if (io->kind == IO_BUFFER) {
    copy_chunk(conn, offset, want, io->buffer);
  } else {
    __u64 remaining = want;
    for (__u32 i = 0; i < MAX_IOVECS; i++) {
      if (i >= io->iovec_count || remaining == 0) break;
      struct iovec iov = {};
      if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(io->buffer + i * sizeof(iov)))) break;
      __u64 chunk = iov.iov_len < remaining ? iov.iov_len : remaining;
      if (chunk > ET_MAX_CAPTURE) chunk = ET_MAX_CAPTURE;
      copy_chunk(conn, offset, chunk, (__u64)iov.iov_base);
      offset += chunk;
      remaining -= chunk;
    }
    want -= remaining;
  }
  if (response_side)
    conn->exchange.response_captured = have + want;
  else
    conn->exchange.request_captured = have + want;
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
  conn->protocol = PROTO_HTTP1;
  conn->phase = PHASE_REQUEST;
}

static __always_inline bool response_is_interim(struct conn_state *conn) {
  /* "HTTP/1.1 1xx": the status' first digit sits at offset 9 of the response prefix. */
  __u32 at = masked_offset(capture_bytes + 9);
  return conn->exchange.response_captured > 9 && conn->exchange.data[at] == '1';
}

static __always_inline void on_request_bytes(struct conn_state *conn, const struct io_args *io, __s64 length,
                                             __u64 first_word, __u64 start_ns, __u64 end_ns) {
  if (conn->phase != PHASE_REQUEST) {
    if (!is_request_start(first_word, length)) {
      /* A stream we saw from its first byte that does not open with a request is not
       * HTTP/1: stop looking at it. A stream joined mid-way may still reach a request. */
      if (conn->from_start && conn->exchange.sequence == 0 && length >= 4) {
        conn->protocol = PROTO_OTHER;
        count(ET_STAT_NON_HTTP_CONNECTIONS);
      }
      return;
    }
    if (conn->phase == PHASE_RESPONSE) emit_exchange(conn, 0);
    begin_exchange(conn, start_ns, 0);
    if (conn->exchange.role == ET_ROLE_SERVER) remember_server_thread(conn);
  }
  capture(conn, false, io, length);
  conn->exchange.request_end_ns = end_ns;
  conn->exchange.request_bytes += length;
  if (conn->exchange.role == ET_ROLE_SERVER) settle_server_context(conn, false);
}

static __always_inline void on_response_bytes(struct conn_state *conn, const struct io_args *io, __s64 length,
                                              __u64 first_word, __u64 start_ns, __u64 end_ns) {
  if (conn->phase == PHASE_IDLE) {
    /* A connection joined mid-stream whose first request we missed (its reader was already
     * blocked in read() when we attached): keep the response, the request stays unknown. */
    if (conn->from_start || conn->exchange.sequence != 0 || !is_response_start(first_word, length)) return;
    begin_exchange(conn, start_ns, 0);
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = start_ns;
  } else if (conn->phase == PHASE_REQUEST) {
    if (conn->exchange.role == ET_ROLE_SERVER) settle_server_context(conn, true);
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = start_ns;
  } else if (is_response_start(first_word, length) && conn->exchange.response_captured > 0 &&
             !response_is_interim(conn)) {
    /* The next response of pipelined requests: close this exchange and open its successor,
     * whose request is further on in the request bytes already sent to userspace. */
    __u64 request_start = conn->exchange.request_start_ns;
    __u64 request_end = conn->exchange.request_end_ns;
    emit_exchange(conn, 0);
    begin_exchange(conn, request_start, ET_EXCHANGE_PIPELINED);
    conn->exchange.request_end_ns = request_end;
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = start_ns;
  }
  capture(conn, true, io, length);
  conn->exchange.response_end_ns = end_ns;
  conn->exchange.response_bytes += length;
}

/* The first buffer of a send and the send's total length (0 when it cannot be told). */
static __always_inline __u64 send_extent(__u32 kind, __u64 buffer, __u64 count, __u64 *first_buffer, __u64 *first_length) {
  if (kind == IO_BUFFER) {
    *first_buffer = buffer;
    *first_length = count;
    return count;
  }
  __u64 iovecs = buffer, iovec_count = count;
  if (kind == IO_MSGHDR) {
    struct user_msghdr msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), (void *)buffer)) return 0;
    iovecs = (__u64)msg.msg_iov;
    iovec_count = msg.msg_iovlen;
  }
  if (iovec_count == 0 || iovec_count > 8) return 0;
  __u64 total = 0;
  for (__u32 i = 0; i < 8; i++) {
    if (i >= iovec_count) break;
    struct iovec iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), (void *)(iovecs + i * sizeof(iov)))) return 0;
    if (i == 0) {
      *first_buffer = (__u64)iov.iov_base;
      *first_length = iov.iov_len;
    }
    total += iov.iov_len;
  }
  return total;
}

/* A client about to send: a new request opens its exchange here, at syscall entry, so the
 * injector running inside this syscall finds the plan. */
/* Returns whether an injection plan was written. */
static __always_inline bool before_client_send(__u64 pid_tgid, __u32 fd, __u32 kind, __u64 buffer, __u64 count, __u64 now) {
  struct conn_key key = {.tgid = pid_tgid >> 32, .fd = fd};
  struct conn_state *conn = bpf_map_lookup_elem(&conns, &key);
  if (!conn || conn->exchange.role != ET_ROLE_CLIENT || conn->protocol >= PROTO_OTHER || conn->phase == PHASE_REQUEST)
    return false;
  __u64 first_buffer = 0, first_length = 0;
  __u64 total = send_extent(kind, buffer, count, &first_buffer, &first_length);
  if (total == 0 || first_length == 0) return false;
  __u64 first_word = 0;
  bpf_probe_read_user(&first_word, sizeof(first_word), (void *)first_buffer);
  if (!is_request_start(first_word, first_length)) return false;
  if (conn->phase == PHASE_RESPONSE) emit_exchange(conn, 0);
  begin_exchange(conn, now, 0);
  settle_client_context(conn, first_buffer, first_length < total ? first_length : total);
  if (!(conn->exchange.flags & ET_EXCHANGE_INJECTED)) return false;
  if (total != first_length) {
    /* The injector checks the whole send's size. */
    __u64 pid = pid_tgid;
    struct et_inject_plan *plan = bpf_map_lookup_elem(&inject_plans, &pid);
    if (plan) plan->send_length = total;
  }
  return true;
}

static __always_inline int remember_io(__u32 fd, __u64 buffer, __u32 kind, __u64 count, __u32 ingress) {
  if (!current_is_traced()) return 0;
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  __u64 now = bpf_ktime_get_ns();
  bool planned = !ingress && before_client_send(pid_tgid, fd, kind, buffer, count, now);
  if (ingress) {
    /* A server going back to reading has finished its response: send the exchange now
     * instead of waiting for the next request, unless it only sent "100 Continue". */
    struct conn_key key = {.tgid = pid_tgid >> 32, .fd = fd};
    struct conn_state *conn = bpf_map_lookup_elem(&conns, &key);
    if (conn && conn->phase == PHASE_RESPONSE && conn->exchange.role == ET_ROLE_SERVER &&
        !response_is_interim(conn))
      emit_exchange(conn, 0);
  }
  struct io_args io = {
      .buffer = buffer,
      .enter_ns = now,
      .fd = fd,
      .kind = kind,
      .iovec_count = (__u32)count,
      .ingress = ingress,
      .pending = 1,
      .planned = planned,
  };
  /* A thread that did I/O before has its slot already: overwrite it in place. */
  struct io_args *slot = bpf_map_lookup_elem(&active_io, &pid_tgid);
  if (slot)
    *slot = io;
  else
    bpf_map_update_elem(&active_io, &pid_tgid, &io, BPF_ANY);
  return 0;
}

static __always_inline int complete_io(__s64 returned) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  struct io_args *pending = bpf_map_lookup_elem(&active_io, &pid_tgid);
  if (!pending || !pending->pending) return 0;
  struct io_args io = *pending;
  pending->pending = 0;
  /* A plan never outlives its syscall, used or not. */
  if (io.planned) bpf_map_delete_elem(&inject_plans, &pid_tgid);
  if (returned <= 0) return 0;

  if (io.kind == IO_MSGHDR) {
    struct user_msghdr msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), (void *)io.buffer)) return 0;
    io.buffer = (__u64)msg.msg_iov;
    io.iovec_count = msg.msg_iovlen;
    io.kind = IO_IOVEC;
  }

  struct conn_state *conn = conn_for_data(pid_tgid >> 32, io.fd);
  if (!conn) return 0;

  __u64 now = bpf_ktime_get_ns();
  __u8 role = conn->exchange.role;
  /* The first bytes matter where a message may start: a new request, a response on a
   * connection joined mid-stream, or a pipelined response of a sampled exchange. */
  bool response_side_now = role != ET_ROLE_UNKNOWN && (role == ET_ROLE_SERVER) != (io.ingress != 0);
  bool unsampled = conn->context_decided && !(conn->exchange.trace_flags & 1);
  bool need_first_bytes = role == ET_ROLE_UNKNOWN || conn->phase == PHASE_IDLE ||
                          (!response_side_now && conn->phase == PHASE_RESPONSE) ||
                          (response_side_now && conn->phase == PHASE_RESPONSE && !unsampled);
  __u64 first_word = need_first_bytes ? peek_first_bytes(&io) : 0;
  if (role == ET_ROLE_UNKNOWN) {
    /* Joined mid-stream: whoever sends a request is the client, whoever sends a response
     * the server. */
    if (is_request_start(first_word, returned))
      role = io.ingress ? ET_ROLE_SERVER : ET_ROLE_CLIENT;
    else if (is_response_start(first_word, returned))
      role = io.ingress ? ET_ROLE_CLIENT : ET_ROLE_SERVER;
    else
      return 0;
    conn->exchange.role = role;
  }

  bool request_side = (role == ET_ROLE_SERVER) == (io.ingress != 0);
  if (request_side) {
    /* Server: the request begins when its first byte is handed over (read returns).
     * Client: when it starts writing it. */
    __u64 start = io.ingress ? now : io.enter_ns;
    on_request_bytes(conn, &io, returned, first_word, start, now);
  } else {
    __u64 start = io.ingress ? now : io.enter_ns;
    on_response_bytes(conn, &io, returned, first_word, start, now);
  }
  return 0;
}

static __always_inline int track_new_connection(__u32 fd, __u8 role) {
  if (!current_is_traced()) return 0;
  struct conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = fd};
  new_conn(&key, role, 1);
  return 0;
}

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(void *raw) {
  const struct trace_event_raw_sys_exit *ctx = raw;
  if (ctx->ret < 0) return 0;
  return track_new_connection((__u32)ctx->ret, ET_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(void *raw) {
  const struct trace_event_raw_sys_exit *ctx = raw;
  if (ctx->ret < 0) return 0;
  return track_new_connection((__u32)ctx->ret, ET_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(void *raw) {
  const struct trace_event_raw_sys_enter *ctx = raw;
  return track_new_connection((__u32)ctx->args[0], ET_ROLE_CLIENT);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(void *raw) {
  const struct trace_event_raw_sys_enter *ctx = raw;
  if (!current_is_traced()) return 0;
  struct conn_key key = {.tgid = bpf_get_current_pid_tgid() >> 32, .fd = (__u32)ctx->args[0]};
  struct conn_state *conn = bpf_map_lookup_elem(&conns, &key);
  if (!conn) return 0;
  if (conn->phase == PHASE_RESPONSE)
    emit_exchange(conn, ET_EXCHANGE_CLOSED);
  else if (conn->phase == PHASE_REQUEST)
    emit_exchange(conn, ET_EXCHANGE_CLOSED | ET_EXCHANGE_NO_RESPONSE);
  bpf_map_delete_elem(&conns, &key);
  return 0;
}

/* Programs take `void *` and cast: Linux 6.1's verifier refuses a typed context argument
 * in an object that also has global subprograms. */
#define IO_PROBES(name, kind, ingress)                                                   \
  SEC("tracepoint/syscalls/sys_enter_" #name)                                           \
  int enter_##name(void *raw) {                                                          \
    const struct trace_event_raw_sys_enter *ctx = raw;                                  \
    return remember_io((__u32)ctx->args[0], ctx->args[1], kind, ctx->args[2], ingress); \
  }                                                                                     \
  SEC("tracepoint/syscalls/sys_exit_" #name)                                            \
  int exit_##name(void *raw) {                                                           \
    const struct trace_event_raw_sys_exit *ctx = raw;                                   \
    return complete_io(ctx->ret);                                                       \
  }

IO_PROBES(read, IO_BUFFER, 1)
IO_PROBES(recvfrom, IO_BUFFER, 1)
IO_PROBES(readv, IO_IOVEC, 1)
IO_PROBES(recvmsg, IO_MSGHDR, 1)
IO_PROBES(write, IO_BUFFER, 0)
IO_PROBES(sendto, IO_BUFFER, 0)
IO_PROBES(writev, IO_IOVEC, 0)
IO_PROBES(sendmsg, IO_MSGHDR, 0)

/* Threads and processes started while serving a request inherit its context, so their
 * outgoing requests become its children. */
SEC("tracepoint/sched/sched_process_fork")
int on_fork(void *raw) {
  const struct trace_event_raw_sched_process_fork *ctx = raw;
  if (!current_is_traced()) return 0;
  __u32 parent = (__u32)bpf_get_current_pid_tgid();
  struct thread_context *context = bpf_map_lookup_elem(&thread_contexts, &parent);
  if (!context) return 0;
  struct thread_context copy = *context;
  __u32 child = (__u32)ctx->child_pid;
  bpf_map_update_elem(&thread_contexts, &child, &copy, BPF_ANY);
  return 0;
}
