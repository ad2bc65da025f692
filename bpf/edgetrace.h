/* Definitions shared by the kernel programs and userspace. This is the only header both
 * sides include, so a layout change here is a change to both. Plain C, fixed-width types,
 * no padding surprises: every struct is laid out by hand in 8-byte groups. */
#ifndef EDGETRACE_SHARED_H
#define EDGETRACE_SHARED_H

#ifdef __BPF__
/* vmlinux.h provides the __u* types in the kernel build. */
#else
#include <linux/types.h>
#endif

/* Upper bound on the captured prefix of each side of an exchange; the runtime value
 * (config `capture_bytes`, default 512) is any power of two up to this. */
#define ET_MAX_CAPTURE 1024
#define ET_DEFAULT_CAPTURE 512

/* Opt-in cgroups may sit at any of these hierarchy levels (1 = child of the root). */
#define ET_MAX_CGROUP_LEVEL 16

enum et_record_type {
  ET_RECORD_HTTP1_EXCHANGE = 1,
};

enum et_role {
  ET_ROLE_UNKNOWN = 0,
  ET_ROLE_SERVER = 1,
  ET_ROLE_CLIENT = 2,
};

/* Head samplers, as named by OTEL_TRACES_SAMPLER. */
enum et_sampler {
  ET_SAMPLER_ALWAYS_ON = 0,
  ET_SAMPLER_ALWAYS_OFF = 1,
  ET_SAMPLER_TRACEIDRATIO = 2,
  ET_SAMPLER_PARENTBASED_ALWAYS_ON = 3,
  ET_SAMPLER_PARENTBASED_ALWAYS_OFF = 4,
  ET_SAMPLER_PARENTBASED_TRACEIDRATIO = 5,
};

/* Flags on an exchange record. */
enum et_exchange_flags {
  /* Responses of pipelined requests: this record continues the previous exchange on the
   * same connection, whose captured request bytes also hold this exchange's request. */
  ET_EXCHANGE_PIPELINED = 1 << 0,
  /* The connection closed before a response was seen. */
  ET_EXCHANGE_NO_RESPONSE = 1 << 1,
  /* Emitted because the connection closed (rather than by the next request or read). */
  ET_EXCHANGE_CLOSED = 1 << 2,
  /* The connection was first seen mid-stream (open before the agent started). */
  ET_EXCHANGE_JOINED_MIDSTREAM = 1 << 3,
  /* parent_span_id is set: from a valid incoming traceparent (server), or the server span
   * this thread was serving (client). */
  ET_EXCHANGE_HAS_PARENT = 1 << 4,
  /* Client: a traceparent was planned for injection into this request. */
  ET_EXCHANGE_INJECTED = 1 << 5,
  /* Client: the request already carried a traceparent, whose ids this span adopted. */
  ET_EXCHANGE_CONTEXT_FROM_REQUEST = 1 << 6,
};

/* Counters in the per-CPU `et_stats` array; userspace sums them across CPUs. */
enum et_stat {
  ET_STAT_EXCHANGES_EMITTED = 0,
  ET_STAT_RINGBUF_DROPS = 1,      /* ring buffer full: the exchange was lost and counted */
  ET_STAT_UNSAMPLED = 2,          /* head sampling said no: counted, never sent */
  ET_STAT_NON_HTTP_CONNECTIONS = 3,
  ET_STAT_CONN_TABLE_FULL = 4,    /* connection state could not be stored */
  ET_STAT_CAPTURE_FAULTS = 5,     /* user memory could not be read */
  ET_STAT_INJECT_PLANNED = 6,     /* outgoing requests given a traceparent plan */
  ET_STAT_COUNT = 7,
};

/* One HTTP/1.x request paired with its response on one connection: the whole unit the
 * kernel sends to userspace. `data` holds the request prefix in [0, request_captured) and
 * the response prefix in [response_offset, response_offset + response_captured), where
 * response_offset is the request prefix's length (the request side never grows once the
 * response has begun); the record is sent trimmed to the end of the response prefix, so a
 * small exchange costs a small record. */
struct et_http_exchange {
  __u32 record_type;  /* enum et_record_type */
  __u32 flags;        /* enum et_exchange_flags */
  __u64 connection_id;
  __u32 tgid;
  __u32 tid;          /* thread that read the request (server) or wrote it (client) */
  __u32 fd;
  __u32 sequence;     /* grows with each exchange on this connection, from 1 (a run of unsampled
                       * exchanges on the socket path counts as one) */

  __u8 role;          /* enum et_role */
  __u8 _pad0;
  __u16 family;       /* AF_INET or AF_INET6 */
  __u16 local_port;   /* host byte order */
  __u16 remote_port;  /* host byte order */
  __u8 local_addr[16];  /* IPv4 in the first 4 bytes */
  __u8 remote_addr[16];

  /* CLOCK_MONOTONIC nanoseconds. Server: first request byte read .. last response byte
   * written. Client: first request byte written .. last response byte read.
   * response_start_ns is when the response began to be seen, as each path can tell it
   * cheaply (the syscall path takes a server's at the end of its first response write,
   * without a clock read at the write's entry); spans do not use it. */
  __u64 request_start_ns;
  __u64 request_end_ns;
  __u64 response_start_ns;
  __u64 response_end_ns;
  __u64 request_bytes;   /* bytes seen on the request side */
  __u64 response_bytes;

  __u16 request_captured;
  __u16 response_captured;
  __u16 response_offset; /* where the response prefix starts in data */
  __u8 trace_flags;      /* W3C flags of this span's context */
  __u8 _pad1;

  /* Trace context decided in the kernel (zero when userspace must assign ids). */
  __u8 trace_id[16];
  __u8 span_id[8];
  __u8 parent_span_id[8];

  __u8 data[2 * ET_MAX_CAPTURE];
};

/* "traceparent: 00-<32 hex>-<16 hex>-<2 hex>\r\n" */
#define ET_TRACEPARENT_HEADER_LEN 70

/* What the capture program asks the injector to insert into one outgoing send. The capture
 * program writes it at syscall entry of a send that starts an HTTP/1.x request (keyed by the
 * sender's pid_tgid) and deletes it at syscall exit, so a plan never outlives its syscall.
 * The sk_msg program, running inside that same syscall, checks that the message is the one
 * planned for (size and first bytes) before it inserts anything; on any doubt the bytes pass
 * untouched. */
struct et_inject_plan {
  __u32 insert_offset;  /* just after the request line's CRLF, within this send */
  __u32 send_length;    /* bytes the application passed to this send */
  __u8 first_bytes[8];  /* the send's first bytes, as a second identity check */
  __u8 header[ET_TRACEPARENT_HEADER_LEN];
  __u8 _pad[2];
};

/* Counters in the injector's per-CPU `et_inject_stats` array (bpf/inject.bpf.c); userspace
 * sums them across CPUs. Verdict counters count sk_msg verdict calls: a send larger than one
 * scatterlist (a few pages) reaches the verdict program once per chunk. */
enum et_inject_stat {
  ET_INJECT_STAT_INJECTED = 0,          /* header inserted and written */
  ET_INJECT_STAT_NO_PLAN = 1,           /* verdict call with no plan for this thread */
  ET_INJECT_STAT_SIZE_MISMATCH = 2,     /* message larger than the planned send */
  ET_INJECT_STAT_BEYOND_CHUNK = 3,      /* insert offset not inside this chunk */
  ET_INJECT_STAT_CONTENT_MISMATCH = 4,  /* first bytes or the CRLF before the offset differ */
  ET_INJECT_STAT_BAD_PLAN = 5,          /* header is not a well-formed traceparent line */
  ET_INJECT_STAT_UNSAFE_SOCKET = 6,     /* send buffer/memory state could split the header */
  ET_INJECT_STAT_PUSH_FAILED = 7,       /* bpf_msg_push_data refused: nothing inserted */
  ET_INJECT_STAT_WRITE_FAILED = 8,      /* inserted bytes could not be written: popped again */
  ET_INJECT_STAT_DROPPED = 9,           /* could not pop either: chunk dropped (never seen) */
  ET_INJECT_STAT_SOCKETS_TRACKED = 10,  /* outgoing connections added to the sockhash */
  ET_INJECT_STAT_SOCKHASH_FAILED = 11,  /* outgoing connections the sockhash refused */
  /* Injected, but the message could not be made one piece again: TCP may send the request
   * line alone and Nagle then holds the rest until the peer's (delayed) ACK. */
  ET_INJECT_STAT_UNMERGED = 12,
  /* Sends without a plan whose bytes tcp_bpf had split across pieces (a page-fragment
   * boundary), made one piece for the same reason. */
  ET_INJECT_STAT_COALESCED = 13,
  ET_INJECT_STAT_COUNT = 14,
};

#define ET_EXCHANGE_HEADER_SIZE ((unsigned long)&((struct et_http_exchange *)0)->data)

#endif /* EDGETRACE_SHARED_H */
