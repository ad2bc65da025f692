/* HTTP/1 message heads as the kernel reads them, shared by both capture paths (syscall
 * tracepoints and cgroup socket programs): which bytes open a request or a response, the
 * W3C traceparent search and parse, and the head-sampling decision. Included once per BPF
 * object, so each object gets its own copy of the sampler settings below. */
#ifndef EDGETRACE_HTTP_HEAD_BPF_H
#define EDGETRACE_HTTP_HEAD_BPF_H

#include "edgetrace.h"

/* Head sampler (enum et_sampler) and its rejection threshold on the trace id's low 56 bits:
 * a root trace is sampled iff those bits, read big-endian, are >= the threshold. */
const volatile __u32 sampler_mode = ET_SAMPLER_PARENTBASED_ALWAYS_ON;
const volatile __u64 sampler_threshold = 0;

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
#define CONTENT_DASH_WORD (WORD4('c', 'o', 'n', 't') | WORD4('e', 'n', 't', '-') << 32)
#define TRANSFER_WORD (WORD4('t', 'r', 'a', 'n') | WORD4('s', 'f', 'e', 'r') << 32)
#define DASH_ENC_WORD WORD4('-', 'e', 'n', 'c')
#define LENG_WORD WORD4('l', 'e', 'n', 'g')
#define LENGTH_COLON_WORD (LENG_WORD | WORD4('t', 'h', ':', 0) << 32)
#define NEWLINES 0x0a0a0a0a0a0a0a0aull
#define LOW_BITS 0x0101010101010101ull
#define HIGH_BITS 0x8080808080808080ull

/* Masks an index so the verifier can bound it. The empty asm hides what the compiler knows
 * of the value, so it cannot drop a mask it believes redundant after a range check. */
static __always_inline __u32 bounded(__u32 value, __u32 mask) {
  asm volatile("" : "+r"(value));
  return value & mask;
}

/* Word loads from a map value at any offset. clang turns a memcpy from a byte pointer into
 * one load per byte (the BPF ISA promises no unaligned access), which made the head scan
 * cost ~70 ns a request (bench/overhead.sh --kernel-detail); the verifier accepts unaligned
 * map-value loads where the CPU handles them (x86-64 and arm64), and the JIT emits one
 * instruction. Only for map values: stack accesses must stay aligned. */
static __always_inline __u64 load_u64(const __u8 *at) { return *(const __u64 *)at; }
static __always_inline __u32 load_u32(const __u8 *at) { return *(const __u32 *)at; }

struct head_scan {
  const __u8 *bytes; /* a map value with at least 1024 + 128 readable bytes */
  __u32 start;       /* first offset to look at */
  __u32 length;      /* bytes that are valid */
  __u32 cursor;      /* where the next step looks */
  __s32 line_end;    /* offset just past the first "\n", or -1 */
  __s32 head_end;    /* offset just past the blank line ending the head, or -1 */
  __s32 traceparent; /* offset of the first traceparent field's value, or -1 */
  __u8 announces_body; /* a Content-Length or Transfer-Encoding field was seen */
};

/* Where the head ends when the newline at `at` is followed by a blank line ("\n" or
 * "\r\n"): the offset just past it, else -1. */
static __always_inline __s32 blank_line_after(const __u8 *bytes, __u32 at, __u32 length) {
  if (at + 1 < length && bytes[bounded(at + 1, 1023)] == '\n') return at + 2;
  if (at + 2 < length && bytes[bounded(at + 1, 1023)] == '\r' && bytes[bounded(at + 2, 1023)] == '\n') return at + 3;
  return -1;
}

/* 1 when x is 0, else 0, without a branch. */
static __always_inline __u64 is_zero(__u64 x) { return ~(x | -x) >> 63; }

/* Whether a line's first twelve letters (word, tail: folded to lower case) are those of
 * Content-Length or Transfer-Encoding. Without branches: the verifier follows the head scan
 * as a loop, and a branch here would double the states it keeps per line. A stray match (a
 * "-" folded from "\r") only keeps a request from the quicker way through (request_whole). */
static __always_inline __u8 names_body_field(__u64 word, __u32 tail) {
  return is_zero((word ^ CONTENT_DASH_WORD) | (tail ^ LENG_WORD)) | is_zero((word ^ TRANSFER_WORD) | (tail ^ DASH_ENC_WORD));
}

static __always_inline void look_at_newline(struct head_scan *scan, const __u8 *bytes, __u32 at) {
  if (scan->line_end < 0) scan->line_end = at + 1;
  /* Stored only when found: a store on every line leaves the verifier too many states. */
  __s32 head_end = blank_line_after(bytes, at, scan->length);
  if (head_end >= 0) {
    scan->head_end = head_end;
    return;
  }
  if (at + 1 + TRACEPARENT_NAME_LEN > scan->length) return;
  __u32 name = bounded(at + 1, 1023);
  /* |0x20 folds ASCII letters to lower case and maps no other byte onto one. */
  __u64 word = load_u64(&bytes[name]) | 0x2020202020202020ull;
  __u32 tail = load_u32(&bytes[name + 8]);
  scan->announces_body |= names_body_field(word, tail | 0x20202020u);
  if (scan->traceparent >= 0) return;
  if (word == TRACEPARENT_WORD && (tail | 0x00202020u) == ENT_COLON_WORD)
    scan->traceparent = at + 1 + TRACEPARENT_NAME_LEN;
}

/* Bytes one step of the head scan covers when it finds no newline: long header lines
 * (user agents, cookies) then cost one step per 64 bytes rather than per 8. */
#define SCAN_STEP_WORDS 8

#define NEWLINE_PAST_END -2 /* the bytes ran out before a newline */
#define NEWLINE_NOT_YET -1  /* none in this window: look on from the window's end */

/* Offset of the first newline in the window of SCAN_STEP_WORDS words from `at`, reading 8
 * bytes at a time, or NEWLINE_NOT_YET / NEWLINE_PAST_END. `bytes` has at least 1024 + 8
 * readable bytes; only offsets below `length` count. */
static __always_inline __s32 find_newline(const __u8 *bytes, __u32 at, __u32 length) {
#pragma unroll
  for (__u32 w = 0; w < SCAN_STEP_WORDS; w++) {
    __u32 word_at = at + 8 * w;
    if (word_at >= length) return NEWLINE_PAST_END;
    __u64 word = load_u64(&bytes[bounded(word_at, 1023)]);
    __u64 x = word ^ NEWLINES;
    /* Flags the high bit of every zero byte of x; the lowest flag is always exact. */
    __u64 found = (x - LOW_BITS) & ~x & HIGH_BITS;
    __u32 valid = length - word_at;
    if (valid < 8) found &= (1ull << (valid * 8)) - 1;
    if (!found) continue;
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
    return word_at + k;
  }
  return NEWLINE_NOT_YET;
}

/* One step finds the next newline and looks at the line after it. */
static long scan_head_step(__u32 index, struct head_scan *scan) {
  __u32 at = scan->cursor;
  if (at >= scan->length || at >= 1024) return 1;
  const __u8 *bytes = scan->bytes;
  __s32 pos = find_newline(bytes, at, scan->length);
  if (pos == NEWLINE_PAST_END) {
    scan->cursor = scan->length;
    return 1;
  }
  if (pos == NEWLINE_NOT_YET) {
    scan->cursor = at + 8 * SCAN_STEP_WORDS;
    return 0;
  }
  look_at_newline(scan, bytes, bounded(pos, 1023));
  if (scan->head_end >= 0) return 1;
  scan->cursor = pos + 1;
  return 0;
}

/* At most one step per line plus one per 64 bytes: enough for a 1024-byte head of up to 100
 * lines. */
#define SCAN_STEPS 128

static __always_inline void scan_head(struct head_scan *scan) {
  scan->cursor = scan->start;
  scan->line_end = -1;
  scan->head_end = -1;
  scan->traceparent = -1;
  scan->announces_body = 0;
  bpf_loop(SCAN_STEPS, scan_head_step, scan, 0);
}

/* ---- Response heads: how long a response is, so it can be sent as soon as it ends. ---- */

#define CONTENT_LENGTH_NAME_LEN 15

struct response_scan {
  const __u8 *bytes; /* the response's first byte, in a map value with 1024 + 16 more readable */
  __u32 length;      /* bytes that are valid */
  __u32 cursor;
  __s32 head_end;       /* offset just past the blank line ending the head, or -1 */
  __s32 content_length; /* offset of the first Content-Length field's value, or -1 */
  __u8 transfer_coded;  /* a Transfer-Encoding field is present (it overrides Content-Length) */
};

static __always_inline void look_at_response_line(struct response_scan *scan, const __u8 *bytes, __u32 at) {
  /* Stored only when found: a store on every line leaves the verifier too many states. */
  __s32 head_end = blank_line_after(bytes, at, scan->length);
  if (head_end >= 0) {
    scan->head_end = head_end;
    return;
  }
  if (at + 1 + 16 > scan->length) return;
  __u32 name = bounded(at + 1, 1023);
  __u64 word = load_u64(&bytes[name]) | 0x2020202020202020ull;
  __u64 next = load_u64(&bytes[name + 8]) | 0x2020202020202020ull;
  if (word == CONTENT_DASH_WORD && (next & MASK7) == (LENGTH_COLON_WORD & MASK7)) {
    if (scan->content_length < 0) scan->content_length = at + 1 + CONTENT_LENGTH_NAME_LEN;
  } else if (word == TRANSFER_WORD && (next & MASK4) == DASH_ENC_WORD) {
    scan->transfer_coded = 1;
  }
}

static long scan_response_step(__u32 index, struct response_scan *scan) {
  __u32 at = scan->cursor;
  if (at >= scan->length || at >= 1024) return 1;
  __s32 pos = find_newline(scan->bytes, at, scan->length);
  if (pos == NEWLINE_PAST_END) return 1;
  if (pos == NEWLINE_NOT_YET) {
    scan->cursor = at + 8 * SCAN_STEP_WORDS;
    return 0;
  }
  look_at_response_line(scan, scan->bytes, bounded(pos, 1023));
  if (scan->head_end >= 0) return 1;
  scan->cursor = pos + 1;
  return 0;
}

/* The decimal field value at `at` (after optional blanks) ending the line before `end`, or
 * -1 when it is not one a response length can be taken from. */
static __always_inline __s64 parse_length_value(const __u8 *bytes, __u32 at, __u32 end) {
  for (int i = 0; i < 4 && at < end; i++) {
    __u8 c = bytes[bounded(at, 1023)];
    if (c != ' ' && c != '\t') break;
    at++;
  }
  __s64 value = 0;
  int digits = 0;
  for (int i = 0; i < 11; i++) {
    if (at >= end) return -1;
    __u8 c = bytes[bounded(at, 1023)];
    if (c < '0' || c > '9') break;
    value = value * 10 + (c - '0');
    digits++;
    at++;
  }
  if (digits == 0 || digits > 10 || at >= end) return -1;
  __u8 after = bytes[bounded(at, 1023)];
  return after == '\r' || after == '\n' || after == ' ' || after == '\t' ? value : -1;
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

/* Random ids. bpf_get_prandom_u32() costs ~27 ns a call on the project VM (bench/overhead.sh
 * --kernel-detail, see docs/benchmarks.md) and an exchange draws up to 32 bytes, so each CPU
 * runs a SplitMix64 stream instead, seeded once from the kernel's generator: a few ns per 8
 * bytes. Neither is cryptographic; trace ids need only be unique and uniform. Two programs
 * interleaved on one CPU (a softirq over a syscall, or preemption) can read the same state,
 * so each draw is mixed with the caller's connection id, itself random: ids drawn for
 * different connections stay distinct. */
struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, __u64);
} random_streams SEC(".maps");

static __always_inline __u64 kernel_random_u64(void) { return (__u64)bpf_get_prandom_u32() << 32 | bpf_get_prandom_u32(); }

static __always_inline __u64 random_u64(__u64 salt) {
  __u32 zero = 0;
  __u64 *state = bpf_map_lookup_elem(&random_streams, &zero);
  __u64 z;
  if (state) {
    if (*state == 0) *state = kernel_random_u64();
    z = *state += 0x9e3779b97f4a7c15ull;
  } else {
    z = kernel_random_u64();
  }
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31) ^ salt;
}

/* Fills words * 8 bytes. */
static __always_inline void random_bytes(__u8 *out, int words, __u64 salt) {
  for (int i = 0; i < words; i++) {
    __u64 r = random_u64(salt);
    __builtin_memcpy(out + 8 * i, &r, 8);
  }
}

/* OpenTelemetry consistent sampling: the trace id's last 7 bytes, big-endian, against the
 * rejection threshold. The same rule as userspace/sampling/consistent_probability.h. */
static __always_inline __u64 trace_id_randomness(const __u8 trace_id[16]) {
  __u64 randomness = 0;
  for (int i = 9; i < 16; i++) randomness = randomness << 8 | trace_id[i];
  return randomness;
}

static __always_inline bool ratio_sampled(const __u8 trace_id[16]) { return trace_id_randomness(trace_id) >= sampler_threshold; }

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
  random_bytes(ex->trace_id, 2, ex->connection_id);
  random_bytes(ex->span_id, 1, ex->connection_id);
  __builtin_memset(ex->parent_span_id, 0, sizeof(ex->parent_span_id));
  ex->flags &= ~ET_EXCHANGE_HAS_PARENT;
  ex->trace_flags = sample(ex->trace_id, false, 0);
}

/* A root that must be recorded: the continuation of a pipelined batch whose first exchange
 * was (userspace pairs the batch's later responses with the requests the first record
 * captured, in order, so none of them may go missing). Its trace id's randomness is drawn
 * from the sampled range, so the id still carries its decision to any consistent sampler
 * downstream. */
static __always_inline void start_recorded_root_context(struct et_http_exchange *ex) {
  start_root_context(ex);
  const __u64 range = 1ull << 56;
  __u64 threshold = sampler_threshold;
  if (threshold > 0 && threshold < range) {
    __u64 randomness = threshold + trace_id_randomness(ex->trace_id) % (range - threshold);
    for (int i = 15; i >= 9; i--) {
      ex->trace_id[i] = randomness & 0xff;
      randomness >>= 8;
    }
  }
  ex->trace_flags = 1;
}

#endif /* EDGETRACE_HTTP_HEAD_BPF_H */
