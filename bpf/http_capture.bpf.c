// SPDX-License-Identifier: GPL-2.0
/* Syscall capture of HTTP/1.x exchanges for opted-in processes.
 *
 * Four sets of hooks, one loaded (probes/trace_probes.cpp chooses, in this order): the
 * socket tracepoints (sock_recv_length/sock_send_length, at the end of every socket read and
 * write, with an sk_msg program as the entry of a traced client's sends); fentry/fexit on
 * the followed syscalls' functions; two BTF raw tracepoints on sys_enter/sys_exit that see
 * every syscall and pick out the dozen we follow; one syscall tracepoint per syscall
 * followed. All call the same handlers. Every handler starts with
 * the opt-in check, because these hooks fire for every process on the host: it costs an
 * untraced thread one helper call and a per-CPU lookup (current_is_traced), and its
 * syscall exits one more (complete_io). For a traced
 * connection the kernel keeps a small state machine (idle -> request -> response) and
 * sends userspace one record per request/response pair, never one per syscall. See
 * docs/architecture.md. */
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

const volatile __u32 inject_enabled = 1;
/* Set before load with the socket tracepoints, which see no server go back to reading (the
 * other sets send a server exchange then): a response whose head gives its length is sent
 * as soon as its last byte is written, as the socket path does. */
const volatile __u32 servers_end_at_response_length = 0;

/* Changed by userspace at run time through the mapped .bss. */
volatile __u32 opt_in_cgroup_levels; /* bit L: some opted-in cgroup sits at level L */
volatile __u32 opt_in_pid_count;
/* Userspace adds one after every change to the opt-in set, after the maps and counts
 * above: every verdict cached before (opt_in_verdicts) is then out of date. */
volatile __u64 opt_in_generation;

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
  __u64 enter_ns; /* a send that may be a client's; 0 for a server's (no clock read) */
  __u32 fd;
  __u32 kind; /* enum io_kind */
  __u32 iovec_count;
  __u8 ingress;
  __u8 pending; /* set at entry, cleared at exit: cheaper than deleting the entry */
  __u8 planned; /* an injection plan was written for this send */
  __u8 counted_only; /* a server's response head sampling turned down: the exit has nothing to do */
};

struct conn_key {
  __u32 tgid;
  __u32 fd;
};

/* The server exchange a thread is serving, so that requests it sends on meanwhile become
 * child spans; inherited by threads and processes it starts (on_fork). */
struct thread_context {
  struct conn_key server;
  __u32 sequence;
};

/* What a traced thread keeps in its own task storage: one lookup finds it, it is freed when
 * the thread exits, and only threads that were traced at a syscall entry ever get one, so an
 * untraced thread's exit sees no storage at all. */
struct thread_state {
  struct io_args call; /* the call in flight */
  struct thread_context context; /* server.tgid 0: none */
  /* Set at the thread's first traced entry, when a context its parent handed down at fork
   * (forked_contexts) has been taken over. */
  __u8 started;
  __u8 _pad[3];
  __u32 tid; /* this thread's id, set with `started`: spares a helper call per exchange */
};

struct {
  __uint(type, BPF_MAP_TYPE_TASK_STORAGE);
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, int);
  __type(value, struct thread_state);
} io_in_flight SEC(".maps");

/* The opt-in verdict of a cgroup (and, while pids are opted in, of a process in it), cached
 * per CPU in a direct-mapped table. The key is the task's own cgroup id, which is never
 * reused, so a task moved to another cgroup simply looks up another key; only a change to
 * the opt-in set (opt_in_generation) makes cached verdicts stale. */
#define OPT_IN_VERDICT_SLOTS 256
struct opt_in_verdict {
  __u64 cgroup_id; /* 0 (no cgroup has it): an empty slot */
  __u64 generation;
  __u32 tgid; /* 0 unless pids are opted in */
  __u32 traced;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, OPT_IN_VERDICT_SLOTS);
  __type(key, __u32);
  __type(value, struct opt_in_verdict);
} opt_in_verdicts SEC(".maps");

#include "http_exchange.bpf.h"

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

/* A context handed from a thread to the thread or process it starts, keyed by the child's
 * thread id, until the child's first traced syscall moves it into its own thread_state: the
 * fork tracepoint names the child only by pid, so its task storage cannot be reached there. */
struct {
  __uint(type, BPF_MAP_TYPE_LRU_HASH);
  __uint(max_entries, 16384);
  __type(key, __u32);
  __type(value, struct thread_context);
} forked_contexts SEC(".maps");

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

/* The opt-in check itself: for each level that holds an opted-in cgroup, the current task's
 * ancestor there; then, if pids are configured, its process. current_is_traced() calls it
 * only when the verdict is not cached. */
static __always_inline bool opt_in_matches(void) {
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

/* The id of the task's cgroup (v2): bpf_get_current_cgroup_id() without its helper call,
 * which costs more than the rest of the check. */
static __always_inline __u64 cgroup_id_of(struct task_struct *task) {
  return task->cgroups->dfl_cgrp->kn->id;
}

/* bpf_get_current_pid_tgid() of the current task, without the call. */
static __always_inline __u64 pid_tgid_of(struct task_struct *task) {
  return ((__u64)task->tgid << 32) | (__u32)task->pid;
}

/* Whether the current task (bpf_get_current_task_btf()) is opted in. Syscall tracepoints
 * run these programs on every read and write on the host, so the answer usually comes from
 * opt_in_verdicts: no helper call beyond the one that gave `task`. */
static __always_inline bool current_is_traced(struct task_struct *task) {
  /* Read before anything the verdict depends on: a change made meanwhile moves it on again
   * afterwards, so a verdict taken from a half-made change is never used once it is done. */
  __u64 generation = opt_in_generation;
  __u64 cgroup_id = cgroup_id_of(task);
  __u32 tgid = opt_in_pid_count ? task->tgid : 0;
  __u32 slot = ((__u32)cgroup_id ^ (tgid * 2654435761u)) & (OPT_IN_VERDICT_SLOTS - 1);
  struct opt_in_verdict *cached = bpf_map_lookup_elem(&opt_in_verdicts, &slot);
  if (cached && cached->cgroup_id == cgroup_id && cached->tgid == tgid && cached->generation == generation)
    return cached->traced;
  bool traced = opt_in_matches();
  /* Cached only if the task stayed in that cgroup while opt_in_matches() looked: it may
   * have been moved meanwhile, and the verdict must be the key's. */
  if (cached && cgroup_id_of(task) == cgroup_id) {
    cached->cgroup_id = cgroup_id;
    cached->generation = generation;
    cached->tgid = tgid;
    cached->traced = traced;
  }
  return traced;
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
  conn->exchange.connection_id = kernel_random_u64();
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

static __always_inline void remember_server_thread(struct thread_state *thread, const struct conn_state *conn) {
  thread->context.server.tgid = conn->exchange.tgid;
  thread->context.server.fd = conn->exchange.fd;
  thread->context.sequence = conn->exchange.sequence;
}

/* The server exchange this thread is serving right now, if any. */
static __always_inline struct conn_state *serving_exchange(const struct thread_state *thread) {
  if (!thread->context.server.tgid) return NULL;
  struct conn_key key = thread->context.server;
  struct conn_state *server = bpf_map_lookup_elem(&conns, &key);
  if (!server || server->phase == PHASE_IDLE || server->exchange.sequence != thread->context.sequence ||
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
 * context (child of `server`, the server exchange this thread serves, or a new root) and, when the
 * head is complete in this send and carries no traceparent, plan the injection. `length` is the
 * send's first buffer's; its first SEND_SCAN_BYTES at most are in `scratch` already
 * (before_client_send read them). */
__noinline int settle_client_context(struct conn_state *conn, struct conn_state *server, struct send_scratch *scratch,
                                     __u64 length, __u32 may_inject) {
  if (!conn) return 0;
  struct et_http_exchange *ex = &conn->exchange;
  conn->context_decided = 1;
  if (!scratch) {
    start_root_context(ex);
    return 0;
  }
  __u32 scanned = length < SEND_SCAN_BYTES ? length : SEND_SCAN_BYTES;
  struct head_scan scan = {.bytes = scratch->bytes, .start = 0, .length = scanned};
  scan_head(&scan);

  __u8 flags = 0;
  if (scan.traceparent >= 0 &&
      parse_traceparent(scratch->bytes, scan.traceparent, scanned, ex->trace_id, ex->span_id, &flags)) {
    /* The application propagates context itself: this span takes the ids it sent. */
    ex->flags |= ET_EXCHANGE_CONTEXT_FROM_REQUEST;
    ex->trace_flags = flags & 1;
    if (server && same_trace_id(server->exchange.trace_id, ex->trace_id)) {
      __builtin_memcpy(ex->parent_span_id, server->exchange.span_id, 8);
      ex->flags |= ET_EXCHANGE_HAS_PARENT;
    }
    return 0;
  }

  if (server) {
    settle_server_context(server, true);
    __builtin_memcpy(ex->trace_id, server->exchange.trace_id, 16);
    __builtin_memcpy(ex->parent_span_id, server->exchange.span_id, 8);
    random_bytes(ex->span_id, 1, ex->connection_id);
    ex->flags |= ET_EXCHANGE_HAS_PARENT;
    ex->trace_flags = server->exchange.trace_flags & 1;
  } else {
    start_root_context(ex);
  }

  /* Inject only into a head we can see whole: the request line and the blank line are in
   * this send, and no traceparent anywhere in it. Otherwise the bytes pass untouched. */
  if (!inject_enabled || !may_inject || scan.traceparent >= 0 || scan.line_end < 0 || scan.head_end < 0) return 0;
  __u32 zero = 0;
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

/* The first `count` (1..max, max a power of two) entries of an iovec array in user memory, in
 * one bpf_probe_read_user: each call costs ~90 ns here, far more than its bytes. False on a
 * fault. */
static __always_inline bool read_iovec_array(struct iovec *out, __u32 count, __u32 max, __u64 address) {
  __u32 bytes = (bounded(count - 1, max - 1) + 1) * sizeof(struct iovec);
  return bpf_probe_read_user(out, bytes, (void *)address) == 0;
}

/* Returns false when the user memory could not be read. */
static __always_inline bool copy_chunk(struct conn_state *conn, __u32 offset, __u64 length, __u64 source) {
  if (length > ET_MAX_CAPTURE) length = ET_MAX_CAPTURE;
  if (length == 0) return true;
  /* Provably 1..ET_MAX_CAPTURE for older verifiers (6.1) that lose the clamp above. */
  __u32 bytes = bounded((__u32)length - 1, ET_MAX_CAPTURE - 1) + 1;
  if (bpf_probe_read_user(&conn->exchange.data[masked_offset(offset)], bytes, (void *)source)) {
    count(ET_STAT_CAPTURE_FAULTS);
    return false;
  }
  return true;
}

/* Appends up to the capture size of this call's bytes to one side of the exchange.
 * `note_length`: a response begins with this call, and its length is wanted. When the call
 * writes it from several buffers (a head, then a body), the head is looked at after the first
 * (note_response_length), and if the call carries exactly that one whole response, the rest
 * is not copied: userspace reads heads only, and the bytes after a head matter only to find
 * another response behind it. Each buffer not copied spares ~100 ns (bench/overhead.sh
 * --kernel-detail). Returns whether the length was noted here for good (more bytes could not
 * change it). */
static __always_inline bool capture(struct conn_state *conn, bool response_side, const struct io_args *io,
                                    __u64 length, bool note_length) {
  /* An unsampled exchange is only counted: nothing of it needs copying. */
  if (exchange_unsampled(conn)) return false;
  __u32 cap = capture_bytes;
  __u32 have = response_side ? conn->exchange.response_captured : conn->exchange.request_captured;
  if (have >= cap) return false;
  __u32 room = cap - have;
  __u64 want = length < room ? length : room;
  if (response_side && have == 0) conn->exchange.response_offset = conn->exchange.request_captured;
  __u32 offset = (response_side ? conn->exchange.response_offset : 0) + have;

  bool noted = false;
  if (io->kind == IO_BUFFER) {
    copy_chunk(conn, offset, want, io->buffer);
  } else {
    struct iovec iovs[MAX_IOVECS] = {};
    __u32 iovec_count = io->iovec_count < MAX_IOVECS ? io->iovec_count : MAX_IOVECS;
    if (iovec_count == 0) return false;
    if (!read_iovec_array(iovs, iovec_count, MAX_IOVECS, io->buffer)) {
      count(ET_STAT_CAPTURE_FAULTS);
      return false;
    }
    __u64 remaining = want;
    for (__u32 i = 0; i < MAX_IOVECS; i++) {
      if (i >= iovec_count || remaining == 0) break;
      __u64 chunk = iovs[i].iov_len < remaining ? iovs[i].iov_len : remaining;
      if (chunk > ET_MAX_CAPTURE) chunk = ET_MAX_CAPTURE;
      copy_chunk(conn, offset, chunk, (__u64)iovs[i].iov_base);
      offset += chunk;
      remaining -= chunk;
      if (i == 0 && note_length && response_side && have == 0 && remaining > 0) {
        conn->exchange.response_captured = chunk;
        noted = note_response_length(conn);
        if (noted && conn->response_expected == length) break;
      }
    }
    want -= remaining;
  }
  if (response_side)
    conn->exchange.response_captured = have + want;
  else
    conn->exchange.request_captured = have + want;
  return noted;
}

enum request_bytes_outcome { REQUEST_BYTES_IGNORED = 0, REQUEST_BYTES_ADDED = 1, REQUEST_BYTES_OPENED = 2 };

/* `prefetched`: this call's first bytes already copied to the start of the request prefix
 * (see complete_io), so nothing is read twice. */
static __always_inline int on_request_bytes(struct conn_state *conn, struct thread_state *thread, const struct io_args *io,
                                            __s64 length, __u64 first_word, __u64 start_ns, __u64 end_ns,
                                            __u32 prefetched) {
  int outcome = REQUEST_BYTES_ADDED;
  if (conn->phase != PHASE_REQUEST) {
    if (!is_request_start(first_word, length)) {
      /* A stream we saw from its first byte that does not open with a request is not
       * HTTP/1: stop looking at it. A stream joined mid-way may still reach a request. */
      if (conn->from_start && conn->exchange.sequence == 0 && length >= 4) {
        conn->protocol = PROTO_OTHER;
        count(ET_STAT_NON_HTTP_CONNECTIONS);
      }
      return REQUEST_BYTES_IGNORED;
    }
    if (conn->phase == PHASE_RESPONSE) emit_exchange(conn, 0);
    begin_exchange(conn, start_ns, 0, thread->tid);
    if (conn->exchange.role == ET_ROLE_SERVER) remember_server_thread(thread, conn);
    outcome = REQUEST_BYTES_OPENED;
  }
  if (prefetched)
    conn->exchange.request_captured = prefetched;
  else
    capture(conn, false, io, length, false);
  conn->exchange.request_end_ns = end_ns;
  conn->exchange.request_bytes += length;
  if (conn->exchange.role == ET_ROLE_SERVER) settle_server_context(conn, false);
  return outcome;
}

static __always_inline void on_response_bytes(struct conn_state *conn, const struct thread_state *thread,
                                              const struct io_args *io, __s64 length, __u64 first_word,
                                              __u64 start_ns, __u64 end_ns) {
  if (conn->phase == PHASE_IDLE) {
    /* A connection joined mid-stream whose first request we missed (its reader was already
     * blocked in read() when we attached): keep the response, the request stays unknown. */
    if (conn->from_start || conn->exchange.sequence != 0 || !is_response_start(first_word, length)) return;
    begin_exchange(conn, start_ns, 0, thread->tid);
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
    begin_pipelined_continuation(conn, request_start);
    conn->exchange.request_end_ns = request_end;
    conn->phase = PHASE_RESPONSE;
    conn->exchange.response_start_ns = start_ns;
  }
  /* A server exchange is sent when the server goes back to reading (remember_io); a client
   * that keeps its connection idle would hold its last one until its next request, so it
   * is sent as soon as the response's length, by its head, has been read. */
  bool ends_at_length = conn->exchange.role == ET_ROLE_CLIENT || servers_end_at_response_length;
  bool response_begins = conn->exchange.response_bytes == 0;
  bool noted = capture(conn, true, io, length, ends_at_length && response_begins);
  conn->exchange.response_end_ns = end_ns;
  conn->exchange.response_bytes += length;
  if (ends_at_length && !exchange_unsampled(conn) && response_just_ended(conn, response_begins && !noted))
    finish_exchange(conn, 0);
}

#define MAX_SEND_IOVECS 8

/* The first buffer of a send and the send's total length (0 when it cannot be told). The
 * iovec array is read into send_scratch, which settle_client_context only fills afterwards. */
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
  if (iovec_count == 0 || iovec_count > MAX_SEND_IOVECS) return 0;
  __u32 zero = 0;
  struct send_scratch *scratch = bpf_map_lookup_elem(&send_scratch, &zero);
  if (!scratch) return 0;
  struct iovec *iovs = (struct iovec *)scratch->bytes;
  if (!read_iovec_array(iovs, iovec_count, MAX_SEND_IOVECS, iovecs)) return 0;
  *first_buffer = (__u64)iovs[0].iov_base;
  *first_length = iovs[0].iov_len;
  __u64 total = 0;
  for (__u32 i = 0; i < MAX_SEND_IOVECS; i++) {
    if (i >= iovec_count) break;
    total += iovs[i].iov_len;
  }
  return total;
}

/* A client about to send: a new request opens its exchange here, at syscall entry, so the
 * injector running inside this syscall finds the plan. Returns whether a plan was written
 * (never unless `may_plan`: too late once the send is done). */
static __always_inline bool before_client_send(struct conn_state *conn, const struct thread_state *thread,
                                               __u64 pid_tgid, __u32 kind, __u64 buffer, __u64 count, __u64 now,
                                               bool may_plan) {
  if (!conn || conn->exchange.role != ET_ROLE_CLIENT || conn->protocol >= PROTO_OTHER || conn->phase == PHASE_REQUEST)
    return false;
  __u64 first_buffer = 0, first_length = 0;
  __u64 total = send_extent(kind, buffer, count, &first_buffer, &first_length);
  if (total == 0 || first_length == 0) return false;
  /* The head once, into send_scratch (send_extent is done with it): recognised here, searched
   * by settle_client_context. A buffer that cannot be read fails the send itself (EFAULT). */
  __u32 zero = 0;
  struct send_scratch *scratch = bpf_map_lookup_elem(&send_scratch, &zero);
  if (!scratch) return false;
  __u32 head_bytes = first_length < SEND_SCAN_BYTES ? first_length : SEND_SCAN_BYTES;
  if (bpf_probe_read_user(scratch->bytes, head_bytes & (SEND_SCAN_BYTES * 2 - 1), (void *)first_buffer)) return false;
  /* Bytes past first_length are never compared. */
  if (!is_request_start(load_u64(scratch->bytes), first_length)) return false;
  if (conn->phase == PHASE_RESPONSE) emit_exchange(conn, 0);
  begin_exchange(conn, now, 0, thread->tid);
  settle_client_context(conn, serving_exchange(thread), scratch, first_length, may_plan);
  if (!(conn->exchange.flags & ET_EXCHANGE_INJECTED)) return false;
  if (total != first_length) {
    /* The injector checks the whole send's size. */
    __u64 pid = pid_tgid;
    struct et_inject_plan *plan = bpf_map_lookup_elem(&inject_plans, &pid);
    if (plan) plan->send_length = total;
  }
  return true;
}

/* A thread's first traced entry: take over the context the thread that started it handed
 * down (on_fork). */
static __always_inline void adopt_forked_context(struct thread_state *thread, __u32 tid) {
  thread->started = 1;
  thread->tid = tid;
  struct thread_context *inherited = bpf_map_lookup_elem(&forked_contexts, &tid);
  if (!inherited) return;
  thread->context = *inherited;
  bpf_map_delete_elem(&forked_contexts, &tid);
}

/* The entry half of a followed read or write of a traced thread; `conn` is the state of its
 * fd, NULL when there is none yet. */
static __always_inline void remember_call(struct task_struct *task, struct thread_state *thread, struct conn_state *conn,
                                          __u32 fd, __u64 buffer, __u32 kind, __u64 count, __u32 ingress, bool may_plan) {
  __u64 pid_tgid = pid_tgid_of(task);
  if (!thread->started) adopt_forked_context(thread, (__u32)pid_tgid);
  /* A client's request starts leaving at its send's entry: the one clock read at an entry
   * (~60 ns here, bench/overhead.sh --kernel-detail). A read's data arrives at exit, which
   * reads its own clock, and a server's send needs none here: spans end at the response's
   * last byte, taken at exit (complete_io). */
  bool unsampled_response = !ingress && conn && is_response_side(conn, false) && exchange_unsampled(conn);
  bool maybe_client_send = !ingress && (!conn || conn->exchange.role != ET_ROLE_SERVER);
  __u64 now = maybe_client_send ? bpf_ktime_get_ns() : 0;
  /* A server's response that head sampling turned down only has to move the exchange to its
   * response phase, so that the server's next read closes it: done here, the exit then skips
   * the connection lookup. Early by a syscall when the send fails, which changes nothing: the
   * exchange is still counted once, when the server reads again or closes. */
  bool counted_only = unsampled_response && conn->exchange.role == ET_ROLE_SERVER && conn->phase != PHASE_IDLE;
  if (counted_only) conn->phase = PHASE_RESPONSE;
  bool planned = !ingress && before_client_send(conn, thread, pid_tgid, kind, buffer, count, now, may_plan);
  /* A server going back to reading has finished its response: send the exchange now
   * instead of waiting for the next request, unless it only sent "100 Continue". */
  if (ingress && conn && conn->phase == PHASE_RESPONSE && conn->exchange.role == ET_ROLE_SERVER &&
      !response_is_interim(conn))
    emit_exchange(conn, 0);
  thread->call = (struct io_args){
      .buffer = buffer,
      .enter_ns = now,
      .fd = fd,
      .kind = kind,
      .iovec_count = (__u32)count,
      .ingress = ingress,
      .pending = 1,
      .planned = planned,
      .counted_only = counted_only,
  };
}

static __always_inline int remember_io(__u32 fd, __u64 buffer, __u32 kind, __u64 count, __u32 ingress) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) return 0;
  /* Without it the call cannot be followed to its exit (nor a plan deleted there). NULL only
   * when the kernel cannot allocate, or (6.1) another task-storage call holds this CPU. */
  struct thread_state *thread = bpf_task_storage_get(&io_in_flight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!thread) return 0;
  struct conn_key key = {.tgid = task->tgid, .fd = fd};
  remember_call(task, thread, bpf_map_lookup_elem(&conns, &key), fd, buffer, kind, count, ingress, true);
  return 0;
}

/* Copies the first bytes a server just read to the start of the request prefix, before
 * knowing whether they open a request: they are the prefix if they do, and nothing else is
 * kept there while the connection is idle. Saves the separate read of the first word (one
 * bpf_probe_read_user). Returns the bytes copied, 0 when this read does not qualify. */
static __always_inline __u32 prefetch_request_head(struct conn_state *conn, const struct io_args *io, __s64 returned) {
  if (io->kind != IO_BUFFER || !io->ingress || conn->exchange.role != ET_ROLE_SERVER || conn->phase != PHASE_IDLE)
    return 0;
  __u64 length = returned < capture_bytes ? returned : capture_bytes;
  /* On a fault the prefix still holds the last exchange's bytes: not this read's. */
  return copy_chunk(conn, 0, length, io->buffer) ? length : 0;
}

/* The exit half: the call `thread` has in flight, now that it returned. `conn`: its fd's
 * state when the caller has it resolved already, else NULL. */
static __always_inline int complete_call(struct task_struct *task, struct thread_state *thread, struct conn_state *conn,
                                         __s64 returned) {
  if (!thread->call.pending) return 0;
  struct io_args io = thread->call;
  thread->call.pending = 0;
  __u64 pid_tgid = pid_tgid_of(task);
  /* A plan never outlives its syscall, used or not. */
  if (io.planned) bpf_map_delete_elem(&inject_plans, &pid_tgid);
  if (returned <= 0 || io.counted_only) return 0;

  if (io.kind == IO_MSGHDR) {
    struct user_msghdr msg = {};
    if (bpf_probe_read_user(&msg, sizeof(msg), (void *)io.buffer)) return 0;
    io.buffer = (__u64)msg.msg_iov;
    io.iovec_count = msg.msg_iovlen;
    io.kind = IO_IOVEC;
  }

  if (!conn) conn = conn_for_data(pid_tgid >> 32, io.fd);
  if (!conn) return 0;

  __u8 role = conn->exchange.role;
  /* The first bytes matter where a message may start: a new request, a response on a
   * connection joined mid-stream, or a pipelined response of a sampled exchange. */
  bool response_side_now = is_response_side(conn, io.ingress);
  bool unsampled = exchange_unsampled(conn);
  bool need_first_bytes = role == ET_ROLE_UNKNOWN || conn->phase == PHASE_IDLE ||
                          (!response_side_now && conn->phase == PHASE_RESPONSE) ||
                          (response_side_now && conn->phase == PHASE_RESPONSE && !unsampled);
  __u32 prefetched = need_first_bytes ? prefetch_request_head(conn, &io, returned) : 0;
  __u64 first_word = 0;
  if (prefetched)
    first_word = load_u64(conn->exchange.data); /* bytes past `returned` are never compared */
  else if (need_first_bytes)
    first_word = peek_first_bytes(&io);
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
  if (request_side && io.ingress) {
    /* A server reading its request: the clock is read once head sampling has decided, and
     * only if the exchange is recorded (~60 ns a read on this VM, bench/overhead.sh
     * --kernel-detail). Its start is then the end of this program rather than the read's
     * return, a fraction of a microsecond later. */
    int outcome = on_request_bytes(conn, thread, &io, returned, first_word, 0, 0, prefetched);
    if (outcome == REQUEST_BYTES_IGNORED || exchange_unsampled(conn)) return 0;
    __u64 now = bpf_ktime_get_ns();
    if (outcome == REQUEST_BYTES_OPENED) conn->exchange.request_start_ns = now;
    conn->exchange.request_end_ns = now;
    return 0;
  }
  /* More of a response that is only counted needs no time (see remember_io). */
  __u64 now = response_side_now && unsampled ? 0 : bpf_ktime_get_ns();
  /* Client: the request begins when it starts writing it (the entry's clock); a server's
   * response, whose entry reads no clock, when its first write ends. A client's response
   * begins when its first byte is handed over. */
  __u64 start = io.ingress || !io.enter_ns ? now : io.enter_ns;
  if (request_side)
    on_request_bytes(conn, thread, &io, returned, first_word, start, now, 0);
  else
    on_response_bytes(conn, thread, &io, returned, first_word, start, now);
  return 0;
}

static __always_inline int complete_io(__s64 returned) {
  struct task_struct *task = bpf_get_current_task_btf();
  /* No task storage at all, the case of every thread never traced at a syscall entry:
   * nothing in flight, and no helper call spent to learn it. */
  if (!task->bpf_storage) return 0;
  struct thread_state *thread = bpf_task_storage_get(&io_in_flight, task, 0, 0);
  if (!thread) return 0;
  return complete_call(task, thread, NULL, returned);
}

static __always_inline int track_new_connection(__u32 fd, __u8 role) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) return 0;
  struct conn_key key = {.tgid = pid_tgid_of(task) >> 32, .fd = fd};
  new_conn(&key, role, 1);
  return 0;
}

/* The exchange a connection was in the middle of, sent as it closes. */
static __always_inline void end_connection(struct conn_state *conn) {
  if (conn->phase == PHASE_RESPONSE)
    emit_exchange(conn, ET_EXCHANGE_CLOSED);
  else if (conn->phase == PHASE_REQUEST)
    emit_exchange(conn, ET_EXCHANGE_CLOSED | ET_EXCHANGE_NO_RESPONSE);
}

/* The state of `key` if it was found on `sock` (on any socket when 0), else NULL. */
static __always_inline struct conn_state *state_on_socket(const struct conn_key *key, __u64 sock) {
  struct conn_state *conn = bpf_map_lookup_elem(&conns, key);
  return conn && (!sock || conn->sock == sock) ? conn : NULL;
}

/* Ends and forgets the connection of (tgid, fd); `sock`, when not 0, must be the socket it
 * was found on, or nothing happens. */
static __always_inline void forget_connection(__u32 tgid, __u32 fd, __u64 sock) {
  struct conn_key key = {.tgid = tgid, .fd = fd};
  struct conn_state *conn = state_on_socket(&key, sock);
  if (!conn) return;
  end_connection(conn);
  bpf_map_delete_elem(&conns, &key);
}

static __always_inline int before_close(__u32 fd) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) return 0;
  forget_connection(task->tgid, fd, 0);
  return 0;
}

/* A send on `fd` that on_client_send entered already (it runs inside the send, once per
 * chunk, before the bytes move). */
static __always_inline bool send_entered(const struct thread_state *thread, __u32 fd) {
  return thread->call.pending && !thread->call.ingress && thread->call.fd == fd;
}

/* The reads and writes followed, each with how its buffer argument is read and whether it
 * brings data in: every per-syscall hook set is generated from this one list. */
#define FOLLOWED_IO_SYSCALLS(X) \
  X(read, IO_BUFFER, 1)         \
  X(recvfrom, IO_BUFFER, 1)     \
  X(readv, IO_IOVEC, 1)         \
  X(recvmsg, IO_MSGHDR, 1)      \
  X(write, IO_BUFFER, 0)        \
  X(sendto, IO_BUFFER, 0)       \
  X(writev, IO_IOVEC, 0)        \
  X(sendmsg, IO_MSGHDR, 0)

static __always_inline int after_accept(long ret) {
  return ret < 0 ? 0 : track_new_connection((__u32)ret, ET_ROLE_SERVER);
}

/* The syscalls followed, by number, for the two hooks that see every syscall. A 32-bit
 * (compat) syscall uses another table: it is left alone (native_syscall), as the syscall
 * tracepoints leave it. */
#if defined(__TARGET_ARCH_x86)
enum followed_syscall {
  NR_READ = 0, NR_WRITE = 1, NR_CLOSE = 3, NR_READV = 19, NR_WRITEV = 20, NR_CONNECT = 42, NR_ACCEPT = 43,
  NR_SENDTO = 44, NR_RECVFROM = 45, NR_SENDMSG = 46, NR_RECVMSG = 47, NR_SHUTDOWN = 48, NR_ACCEPT4 = 288,
};
#define FOLLOWED_BELOW_64                                                                                      \
  (1ull << NR_READ | 1ull << NR_WRITE | 1ull << NR_CLOSE | 1ull << NR_READV | 1ull << NR_WRITEV |               \
   1ull << NR_CONNECT | 1ull << NR_ACCEPT | 1ull << NR_SENDTO | 1ull << NR_RECVFROM | 1ull << NR_SENDMSG |      \
   1ull << NR_RECVMSG)
/* At sys_exit the number is the one the syscall was entered with. */
static __always_inline long syscall_number(const struct pt_regs *regs) { return regs->orig_ax; }
static __always_inline __u64 syscall_arg0(const struct pt_regs *regs) { return regs->di; }
static __always_inline __u64 syscall_arg1(const struct pt_regs *regs) { return regs->si; }
static __always_inline __u64 syscall_arg2(const struct pt_regs *regs) { return regs->dx; }
#define TS_COMPAT 0x0002
static __always_inline bool native_syscall(const struct task_struct *task) { return !(task->thread_info.status & TS_COMPAT); }
/* Unsigned: a skipped syscall's number is -1 (seccomp, ptrace), and x32's carry bit 30. */
static __always_inline bool possibly_followed(long nr) {
  return (unsigned long)nr < 64 ? (FOLLOWED_BELOW_64 >> nr) & 1 : nr == NR_ACCEPT4;
}
#else
/* Only x86-64 has the table (and the compat test) here: elsewhere the syscall tracepoints,
 * which name each syscall, are used (probes/trace_probes.cpp never loads this set there). */
enum followed_syscall {
  NR_READ = -1, NR_WRITE = -2, NR_CLOSE = -3, NR_READV = -4, NR_WRITEV = -5, NR_CONNECT = -6, NR_ACCEPT = -7,
  NR_SENDTO = -8, NR_RECVFROM = -9, NR_SENDMSG = -10, NR_RECVMSG = -11, NR_ACCEPT4 = -12, NR_SHUTDOWN = -13,
};
static __always_inline long syscall_number(const struct pt_regs *regs) { return -100; }
static __always_inline __u64 syscall_arg0(const struct pt_regs *regs) { return 0; }
static __always_inline __u64 syscall_arg1(const struct pt_regs *regs) { return 0; }
static __always_inline __u64 syscall_arg2(const struct pt_regs *regs) { return 0; }
static __always_inline bool native_syscall(const struct task_struct *task) { return false; }
static __always_inline bool possibly_followed(long nr) { return false; }
#endif

/* Whether syscall `nr` is one of the followed reads and writes, and if so how its buffer
 * argument is read and whether it brings data in. */
static __always_inline bool followed_io_syscall(long nr, __u32 *kind, bool *ingress) {
  switch (nr) {
    case NR_READ:
    case NR_RECVFROM: *kind = IO_BUFFER, *ingress = true; return true;
    case NR_READV: *kind = IO_IOVEC, *ingress = true; return true;
    case NR_RECVMSG: *kind = IO_MSGHDR, *ingress = true; return true;
    case NR_WRITE:
    case NR_SENDTO: *kind = IO_BUFFER, *ingress = false; return true;
    case NR_WRITEV: *kind = IO_IOVEC, *ingress = false; return true;
    case NR_SENDMSG: *kind = IO_MSGHDR, *ingress = false; return true;
    default: return false;
  }
}

/* Every syscall on the host passes here: the number test comes first and costs a shift. */
SEC("tp_btf/sys_enter")
int BPF_PROG(on_syscall_enter, struct pt_regs *regs, long nr) {
  if (!possibly_followed(nr)) return 0;
  if (!native_syscall(bpf_get_current_task_btf())) return 0;
  __u32 fd = (__u32)syscall_arg0(regs);
  __u64 buffer = syscall_arg1(regs), count = syscall_arg2(regs);
  if (nr == NR_CONNECT) return track_new_connection(fd, ET_ROLE_CLIENT);
  if (nr == NR_CLOSE) return before_close(fd);
  /* One inlined copy of remember_io, not one per syscall. */
  __u32 kind = IO_BUFFER;
  bool ingress = false;
  if (!followed_io_syscall(nr, &kind, &ingress)) return 0;
  return remember_io(fd, buffer, kind, count, ingress);
}

SEC("tp_btf/sys_exit")
int BPF_PROG(on_syscall_exit, struct pt_regs *regs, long ret) {
  long nr = syscall_number(regs);
  if (!possibly_followed(nr)) return 0;
  switch (nr) {
    case NR_ACCEPT:
    case NR_ACCEPT4: return native_syscall(bpf_get_current_task_btf()) ? after_accept(ret) : 0;
    case NR_CONNECT:
    case NR_CLOSE: return 0;
    default:
      /* Only a call its entry recorded goes further: a compat syscall never was. */
      return complete_io(ret);
  }
}

/* The socket tracepoints: sock_recv_length and sock_send_length fire as a socket read or
 * write returns (sock_recvmsg/sock_sendmsg, which read(), recvfrom(), writev() ... all reach),
 * naming the socket and what the call returned. Nothing else on the host pays anything: no
 * syscall slow path, no other syscall seen. The call's own arguments (fd, buffer) are the
 * syscall's, in the registers the thread entered the kernel with (bpf_task_pt_regs). Each
 * hit does the work of an entry and an exit at once; what must happen before the bytes
 * move, a client request's context and its injection plan, is done by on_client_send, an
 * sk_msg program the injector's sockops gives the cgroup's outgoing connections (it runs
 * inside the send, before TCP takes the bytes). There is no accept or connect hook: a
 * connection is met at its first data, where the TCP byte counts tell whether that is its
 * first byte, and a close is seen as the TCP state change it causes (on_socket_state). */
#define MSG_PEEK 2
#define TCP_FIN_WAIT1 4
#define TCP_CLOSE 7
#define TCP_LAST_ACK 9

/* Which followed read or write the thread is in, by the number it entered the kernel with;
 * false for anything else that reaches a socket (sendfile, splice, io_uring, the kernel's own
 * sockets), which is left alone as the other hook sets leave it. */
static __always_inline bool followed_io_call(const struct pt_regs *regs, bool ingress, __u32 *kind) {
  bool reads = false;
  return followed_io_syscall(syscall_number(regs), kind, &reads) && reads == ingress;
}

/* Bytes the socket has handed to the application (ingress) or taken from it (egress) so far,
 * the current call's included once it is done. */
static __always_inline __u64 bytes_moved_so_far(const struct tcp_sock *tp, bool ingress) {
  if (ingress) return tp->bytes_received - (__u32)(tp->rcv_nxt - tp->copied_seq);
  return tp->bytes_acked + (__u32)(tp->write_seq - tp->snd_una);
}

/* The state of (tgid, fd), which names `sk` now. A connection met for the first time is
 * resolved from the socket itself; one whose first byte is this call's (`moved` is what the
 * call moved, 0 before the bytes move) is followed from its start, and whoever moves that
 * byte gives the role: the sender of a stream's first byte is HTTP's client. `client_hint`:
 * the caller knows the socket is an outgoing connection. NULL for what cannot be followed. */
static __always_inline struct conn_state *conn_for_socket(__u32 tgid, __u32 fd, struct sock *sk, bool ingress,
                                                          __u64 moved, bool client_hint) {
  struct conn_key key = {.tgid = tgid, .fd = fd};
  struct conn_state *conn = bpf_map_lookup_elem(&conns, &key);
  if (conn && conn->sock == (__u64)sk) {
    if (conn->protocol == PROTO_NOT_TCP) return NULL;
    /* The same address can be a new socket: a socket whose state reached CLOSE before its
     * close() (shutdown() first, as Python's socketserver does, or a reset) is never
     * forgotten here, and the kernel hands its memory and its fd number to the next socket.
     * Its ports tell the two apart. */
    if (conn->exchange.local_port == sk->__sk_common.skc_num &&
        conn->exchange.remote_port == bpf_ntohs(sk->__sk_common.skc_dport))
      return conn->protocol >= PROTO_OTHER ? NULL : conn;
  }
  /* The fd was closed without a state change we saw (another holder kept that socket open,
   * or the state changed before the close) and now names another socket: what the old one
   * was doing ends here. */
  if (conn) end_connection(conn);
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  bool from_start = tp && bytes_moved_so_far(tp, ingress) == moved;
  __u8 role = ET_ROLE_UNKNOWN;
  if (client_hint)
    role = ET_ROLE_CLIENT;
  else if (from_start && moved > 0)
    role = ingress ? ET_ROLE_SERVER : ET_ROLE_CLIENT;
  conn = new_conn(&key, role, from_start);
  if (!conn) return NULL;
  conn->sock = (__u64)sk;
  conn->resolved = 1;
  if (!tp || sk->sk_type != SOCK_STREAM) {
    conn->protocol = PROTO_NOT_TCP;
    return NULL;
  }
  read_addresses(sk, &conn->exchange);
  return conn;
}

/* The response to a server request head sampling turned down needs none of its sends
 * followed: the exchange is only counted, when the server's next read or its close ends it.
 * So once such a request is known to be whole (request_whole), the read that brought it
 * moves the exchange to its response phase at once (the full path does so at the
 * response's first send, counted_only), and its sends are let go right after the opt-in
 * check when they are on the socket whose request this thread read last on this CPU, and
 * that socket has read nothing since (copied_seq): then the exchange is still that one. Per CPU rather than in the
 * thread's task storage, whose lookup costs more than the rest of the check; a thread that
 * moved to another CPU in between merely takes the full path. A request that may have more
 * to come (a body, a head split across reads) keeps the full path, which tells its
 * response from its next bytes. */
struct quiet_response {
  __u64 sock;
  __u32 tid;
  __u32 copied_seq;
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct quiet_response);
} quiet_responses SEC(".maps");

static __always_inline bool sends_quiet_response(const struct task_struct *task, struct sock *sk) {
  __u32 zero = 0;
  const struct quiet_response *quiet = bpf_map_lookup_elem(&quiet_responses, &zero);
  if (!quiet || quiet->sock != (__u64)sk || quiet->tid != (__u32)task->pid) return false;
  const struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  return tp && tp->copied_seq == quiet->copied_seq;
}

/* After a server's read: a whole request head sampling turned down is answered from here
 * on, and its sends may be let go. */
static __always_inline void note_quiet_response(const struct task_struct *task, struct sock *sk,
                                                struct conn_state *conn) {
  if (conn->exchange.role != ET_ROLE_SERVER || conn->phase != PHASE_REQUEST || !conn->request_whole ||
      !exchange_unsampled(conn))
    return;
  const struct tcp_sock *tp = bpf_skc_to_tcp_sock(sk);
  __u32 zero = 0;
  struct quiet_response *quiet = bpf_map_lookup_elem(&quiet_responses, &zero);
  if (!tp || !quiet) return;
  conn->phase = PHASE_RESPONSE;
  quiet->sock = (__u64)sk;
  quiet->tid = (__u32)task->pid;
  quiet->copied_seq = tp->copied_seq;
}

static __always_inline int on_socket_io(struct sock *sk, int returned, int flags, bool ingress) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) return 0;
  if (!ingress && sends_quiet_response(task, sk)) return 0;
  /* A peek leaves the bytes for the read that follows. */
  if (ingress && (flags & MSG_PEEK)) return 0;
  const struct pt_regs *regs = (const struct pt_regs *)bpf_task_pt_regs(task);
  __u32 kind = IO_BUFFER;
  if (!followed_io_call(regs, ingress, &kind) || !native_syscall(task)) return 0;
  struct thread_state *thread = bpf_task_storage_get(&io_in_flight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!thread) return 0;
  __u32 fd = (__u32)syscall_arg0(regs);
  bool entered = !ingress && send_entered(thread, fd);
  struct conn_state *conn = NULL;
  if (!entered) {
    conn = conn_for_socket(task->tgid, fd, sk, ingress, returned > 0 ? returned : 0, false);
    if (!conn) return 0;
    remember_call(task, thread, conn, fd, syscall_arg1(regs), kind, syscall_arg2(regs), ingress, false);
  }
  complete_call(task, thread, conn, returned);
  if (ingress) note_quiet_response(task, sk, conn);
  return 0;
}

SEC("tp_btf/sock_recv_length")
int BPF_PROG(on_socket_recv, struct sock *sk, int ret, int flags) { return on_socket_io(sk, ret, flags, true); }

SEC("tp_btf/sock_send_length")
int BPF_PROG(on_socket_send, struct sock *sk, int ret, int flags) { return on_socket_io(sk, ret, flags, false); }

/* A close() that ends a connection moves its TCP state (to FIN_WAIT1, LAST_ACK, or CLOSE with
 * a reset) inside the call, so the thread's registers name the fd. The same change made from
 * a softirq may land on a traced thread that is in close() for another fd: only the state
 * of this very socket is ended.
 * A shutdown() moves it too, and a socket shut down before its close() has usually reached
 * CLOSE by then, outside the close (Python's socketserver ends every connection so). When
 * the peer had finished already (LAST_ACK) the connection is over and is forgotten here.
 * Otherwise (FIN_WAIT1) the application may still read but can no longer write: a server's
 * response is complete, which is all a response delimited by the connection's end waits for. */
SEC("tp_btf/inet_sock_set_state")
int BPF_PROG(on_socket_state, const struct sock *sk, const int oldstate, const int newstate) {
  if (newstate != TCP_FIN_WAIT1 && newstate != TCP_LAST_ACK && newstate != TCP_CLOSE) return 0;
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) return 0;
  const struct pt_regs *regs = (const struct pt_regs *)bpf_task_pt_regs(task);
  long nr = syscall_number(regs);
  if ((nr != NR_CLOSE && nr != NR_SHUTDOWN) || !native_syscall(task)) return 0;
  __u32 fd = (__u32)syscall_arg0(regs);
  if (nr == NR_CLOSE || newstate != TCP_FIN_WAIT1) {
    forget_connection(task->tgid, fd, (__u64)sk);
    return 0;
  }
  struct conn_key key = {.tgid = task->tgid, .fd = fd};
  struct conn_state *conn = state_on_socket(&key, (__u64)sk);
  if (conn && conn->exchange.role == ET_ROLE_SERVER) end_connection(conn);
  return 0;
}

/* The injector's sk_msg program (bpf/inject.bpf.c), placed here by userspace: on_client_send
 * hands each message over to it once the plan is written. */
struct {
  __uint(type, BPF_MAP_TYPE_PROG_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u32);
} injector SEC(".maps");

/* With the socket tracepoints, the entry of a traced client's send: it runs inside the send,
 * once per chunk, before TCP takes the bytes, where the plan must already be. Attached in
 * the injector's place to the sockhash of the opted-in cgroups' outgoing connections. */
SEC("sk_msg")
int on_client_send(struct sk_msg_md *msg) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task)) goto inject;
  const struct pt_regs *regs = (const struct pt_regs *)bpf_task_pt_regs(task);
  __u32 kind = IO_BUFFER;
  if (!followed_io_call(regs, false, &kind) || !native_syscall(task)) goto inject;
  struct thread_state *thread = bpf_task_storage_get(&io_in_flight, task, 0, BPF_LOCAL_STORAGE_GET_F_CREATE);
  if (!thread) goto inject;
  __u32 fd = (__u32)syscall_arg0(regs);
  if (send_entered(thread, fd)) goto inject; /* a later chunk of it */
  struct bpf_sock *socket = msg->sk;
  if (!socket) goto inject;
  struct tcp_sock *tp = bpf_skc_to_tcp_sock(socket);
  if (!tp) goto inject;
  struct conn_state *conn = conn_for_socket(task->tgid, fd, (struct sock *)tp, false, 0, true);
  if (!conn) goto inject;
  remember_call(task, thread, conn, fd, syscall_arg1(regs), kind, syscall_arg2(regs), false, true);
inject:
  bpf_tail_call(msg, &injector, 0);
  return SK_PASS;
}

#if defined(__TARGET_ARCH_x86)
/* fentry/fexit on the x86-64 syscall functions, where the kernel allows them (Debian's 6.1,
 * not this VM): only the followed syscalls pay anything, and no other syscall is put on the
 * slow entry path as any sys_enter/sys_exit hook does. Each function's one argument is the
 * caller's saved registers; the 32-bit entry points (__ia32_sys_*) are other functions. */
#define FENTRY_IO(name, kind, ingress)                                                  \
  SEC("fentry/__x64_sys_" #name)                                                        \
  int BPF_PROG(fentry_##name, const struct pt_regs *regs) {                             \
    return remember_io((__u32)syscall_arg0(regs), syscall_arg1(regs), kind, syscall_arg2(regs), ingress); \
  }                                                                                     \
  SEC("fexit/__x64_sys_" #name)                                                         \
  int BPF_PROG(fexit_##name, const struct pt_regs *regs, long ret) { return complete_io(ret); }

FOLLOWED_IO_SYSCALLS(FENTRY_IO)

SEC("fexit/__x64_sys_accept")
int BPF_PROG(fexit_accept, const struct pt_regs *regs, long ret) { return after_accept(ret); }

SEC("fexit/__x64_sys_accept4")
int BPF_PROG(fexit_accept4, const struct pt_regs *regs, long ret) { return after_accept(ret); }

SEC("fentry/__x64_sys_connect")
int BPF_PROG(fentry_connect, const struct pt_regs *regs) {
  return track_new_connection((__u32)syscall_arg0(regs), ET_ROLE_CLIENT);
}

SEC("fentry/__x64_sys_close")
int BPF_PROG(fentry_close, const struct pt_regs *regs) { return before_close((__u32)syscall_arg0(regs)); }
#endif

/* The same handlers on syscall tracepoints, one per syscall, where neither of the above
 * loads. Programs take `void *` and cast: Linux 6.1's verifier refuses a typed context
 * argument in an object that also has global subprograms. */
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

FOLLOWED_IO_SYSCALLS(IO_PROBES)

SEC("tracepoint/syscalls/sys_exit_accept")
int exit_accept(void *raw) { return after_accept(((const struct trace_event_raw_sys_exit *)raw)->ret); }

SEC("tracepoint/syscalls/sys_exit_accept4")
int exit_accept4(void *raw) { return after_accept(((const struct trace_event_raw_sys_exit *)raw)->ret); }

SEC("tracepoint/syscalls/sys_enter_connect")
int enter_connect(void *raw) {
  const struct trace_event_raw_sys_enter *ctx = raw;
  return track_new_connection((__u32)ctx->args[0], ET_ROLE_CLIENT);
}

SEC("tracepoint/syscalls/sys_enter_close")
int enter_close(void *raw) {
  const struct trace_event_raw_sys_enter *ctx = raw;
  return before_close((__u32)ctx->args[0]);
}

/* Threads and processes started while serving a request inherit its context, so their
 * outgoing requests become its children. */
static __always_inline int hand_down_context(__u32 child) {
  struct task_struct *task = bpf_get_current_task_btf();
  if (!current_is_traced(task) || !task->bpf_storage) return 0;
  struct thread_state *parent = bpf_task_storage_get(&io_in_flight, task, 0, 0);
  if (!parent || !parent->context.server.tgid) return 0;
  struct thread_context copy = parent->context;
  bpf_map_update_elem(&forked_contexts, &child, &copy, BPF_ANY);
  return 0;
}

/* With the syscall tracepoints (tracefs is needed anyway). */
SEC("tracepoint/sched/sched_process_fork")
int on_fork(void *raw) {
  const struct trace_event_raw_sched_process_fork *ctx = raw;
  return hand_down_context((__u32)ctx->child_pid);
}

/* With fentry or the BTF raw tracepoints, which need no tracefs. */
SEC("tp_btf/sched_process_fork")
int BPF_PROG(on_fork_btf, struct task_struct *parent, struct task_struct *child) {
  return hand_down_context((__u32)child->pid);
}
