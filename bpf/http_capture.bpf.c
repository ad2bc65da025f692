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
  __u32 ingress;
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
  __u32 _pad;
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
static __always_inline __u64 peek_first_bytes(const struct io_args *io, __u64 *first_buffer) {
  __u64 buffer = io->buffer;
  if (io->kind != IO_BUFFER) {
    struct iovec iov = {};
    if (bpf_probe_read_user(&iov, sizeof(iov), (void *)buffer)) return 0;
    buffer = (__u64)iov.iov_base;
  }
  *first_buffer = buffer;
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

static __always_inline __u32 masked_offset(__u32 offset) { return offset & (2 * ET_MAX_CAPTURE - 1); }

static __always_inline void copy_chunk(struct conn_state *conn, __u32 offset, __u64 length, __u64 source) {
  if (length > ET_MAX_CAPTURE) length = ET_MAX_CAPTURE;
  if (length == 0) return;
  if (bpf_probe_read_user(&conn->exchange.data[masked_offset(offset)], length, (void *)source))
    count(ET_STAT_CAPTURE_FAULTS);
}

/* Appends up to the capture size of this call's bytes to one side of the exchange. */
static __always_inline void capture(struct conn_state *conn, bool response_side, const struct io_args *io, __u64 length) {
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

static __always_inline void emit_exchange(struct conn_state *conn, __u32 extra_flags) {
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
  conn->phase = PHASE_IDLE;
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
  }
  capture(conn, false, io, length);
  conn->exchange.request_end_ns = end_ns;
  conn->exchange.request_bytes += length;
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

static __always_inline int remember_io(__u32 fd, __u64 buffer, __u32 kind, __u32 iovec_count, __u32 ingress) {
  if (!current_is_traced()) return 0;
  __u64 pid_tgid = bpf_get_current_pid_tgid();
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
      .enter_ns = bpf_ktime_get_ns(),
      .fd = fd,
      .kind = kind,
      .iovec_count = iovec_count,
      .ingress = ingress,
  };
  bpf_map_update_elem(&active_io, &pid_tgid, &io, BPF_ANY);
  return 0;
}

static __always_inline int complete_io(__s64 returned) {
  __u64 pid_tgid = bpf_get_current_pid_tgid();
  struct io_args *pending = bpf_map_lookup_elem(&active_io, &pid_tgid);
  if (!pending) return 0;
  struct io_args io = *pending;
  bpf_map_delete_elem(&active_io, &pid_tgid);
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
  __u64 first_buffer = 0;
  __u64 first_word = peek_first_bytes(&io, &first_buffer);
  __u8 role = conn->exchange.role;
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
int exit_accept(struct trace_event_raw_sys_exit *ctx) {
  if (ctx->ret < 0) return 0;
  return track_new_connection((__u32)ctx->ret, ET_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(struct trace_event_raw_sys_exit *ctx) {
  if (ctx->ret < 0) return 0;
  return track_new_connection((__u32)ctx->ret, ET_ROLE_SERVER);
}

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(struct trace_event_raw_sys_enter *ctx) {
  return track_new_connection((__u32)ctx->args[0], ET_ROLE_CLIENT);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(struct trace_event_raw_sys_enter *ctx) {
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

#define IO_PROBES(name, kind, ingress)                                                   \
  SEC("tracepoint/syscalls/sys_enter_" #name)                                           \
  int enter_##name(struct trace_event_raw_sys_enter *ctx) {                             \
    return remember_io((__u32)ctx->args[0], ctx->args[1], kind, (__u32)ctx->args[2], ingress); \
  }                                                                                     \
  SEC("tracepoint/syscalls/sys_exit_" #name)                                            \
  int exit_##name(struct trace_event_raw_sys_exit *ctx) { return complete_io(ctx->ret); }

IO_PROBES(read, IO_BUFFER, 1)
IO_PROBES(recvfrom, IO_BUFFER, 1)
IO_PROBES(readv, IO_IOVEC, 1)
IO_PROBES(recvmsg, IO_MSGHDR, 1)
IO_PROBES(write, IO_BUFFER, 0)
IO_PROBES(sendto, IO_BUFFER, 0)
IO_PROBES(writev, IO_IOVEC, 0)
IO_PROBES(sendmsg, IO_MSGHDR, 0)
