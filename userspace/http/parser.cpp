// Hand-written rather than built on a library: llhttp/picohttpparser are not Debian-packaged
// dependencies of this project, and neither reports what this needs from a truncated prefix
// (which messages are certain, whether a cut start line is still a request, chunk walking that
// stops cleanly at the capture's end). Every access below is bounds-checked against the view.
#include "http/parser.h"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>

namespace edgetrace::http {
namespace {

constexpr std::array<std::string_view, 9> kKnownMethods{
    "GET", "POST", "PUT", "HEAD", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE"};
constexpr std::size_t kMaxExtensionMethodLength = 20;
constexpr std::string_view kHttp10 = "HTTP/1.0";
constexpr std::string_view kHttp11 = "HTTP/1.1";
// 16 hex digits overflow nothing; anything longer is not a chunk size we could skip anyway.
constexpr std::size_t kMaxChunkSizeDigits = 16;
// Larger declared lengths cannot be skipped within any capture; treat them as invalid.
constexpr std::uint64_t kMaxContentLength = std::uint64_t{1} << 62;

constexpr bool is_upper_alpha(unsigned char c) { return c >= 'A' && c <= 'Z'; }
constexpr bool is_alpha(unsigned char c) { return is_upper_alpha(c) || (c >= 'a' && c <= 'z'); }
constexpr bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

int hex_value(unsigned char c) {
  if (is_digit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// RFC 9110 tchar, as a table: it is tested for every byte of every header name.
constexpr std::array<bool, 256> kTchar = [] {
  std::array<bool, 256> table{};
  for (int c = 0; c < 256; ++c) {
    const auto u = static_cast<unsigned char>(c);
    table[u] = is_alpha(u) || is_digit(u);
  }
  for (const unsigned char c : std::string_view("!#$%&'*+-.^_`|~")) table[c] = true;
  return table;
}();

bool is_tchar(unsigned char c) { return kTchar[c]; }

// Request-target bytes: any visible byte. Bytes >= 0x80 are not valid URI characters but are
// sent by real clients (raw UTF-8) and accepted by common servers, so they are kept as sent.
bool is_target_char(unsigned char c) { return c > 0x20 && c != 0x7f; }

// field-vchar, SP and HTAB (RFC 9110 5.5); CR, LF, NUL and other controls are not.
bool is_field_value_char(unsigned char c) { return c == '\t' || (c >= 0x20 && c != 0x7f); }

bool is_ows(unsigned char c) { return c == ' ' || c == '\t'; }

// True iff every byte is a field-value char. Checked eight bytes at a time: values are nearly
// always plain visible ASCII, and a header value is checked for every header of every message.
bool all_field_value_chars(std::string_view text) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t high_bits = 0x8080808080808080ULL;
  std::size_t i = 0;
  for (; i + 8 <= text.size(); i += 8) {
    std::uint64_t word;
    std::memcpy(&word, text.data() + i, sizeof(word));
    // A high bit in each byte that is below 0x20 or equal to 0x7f (may also flag a byte next
    // to one that is: only ever a false alarm, which the byte loop settles).
    const std::uint64_t del = word ^ (ones * 0x7f);
    const std::uint64_t suspect = ((word - ones * 0x20) | (del - ones)) & ~word & high_bits;
    if (suspect == 0) continue;
    for (std::size_t j = i; j < i + 8; ++j)
      if (!is_field_value_char(static_cast<unsigned char>(text[j]))) return false;
  }
  for (; i < text.size(); ++i)
    if (!is_field_value_char(static_cast<unsigned char>(text[i]))) return false;
  return true;
}

// iequals against a lowercase literal, inline: every header name is compared with up to six
// names of interest, and most differ in length already.
bool equals_lowercase(std::string_view text, std::string_view lowercase) {
  if (text.size() != lowercase.size()) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c >= 'A' && c <= 'Z') c = static_cast<unsigned char>(c + ('a' - 'A'));
    if (c != static_cast<unsigned char>(lowercase[i])) return false;
  }
  return true;
}

std::string_view trim_ows(std::string_view s) {
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && is_ows(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return s;
}

bool is_prefix_of(std::string_view part, std::string_view whole) {
  return part.size() <= whole.size() && whole.substr(0, part.size()) == part;
}

bool is_known_method(std::string_view m) {
  return std::find(kKnownMethods.begin(), kKnownMethods.end(), m) != kKnownMethods.end();
}

bool is_prefix_of_known_method(std::string_view m) {
  return std::any_of(kKnownMethods.begin(), kKnownMethods.end(),
                     [m](std::string_view k) { return is_prefix_of(m, k); });
}

// One line starting at `pos`: its text without the line ending, and where the next line
// starts. A single LF is accepted as a line ending (RFC 9112 2.2).
struct Line {
  std::string_view text;
  std::size_t next = 0;
  bool complete = false;  // saw the LF
};

// The first LF at or after `pos`, or npos. Lines are short (a header line is some 20-40
// bytes), so a word-at-a-time loop here beats the call into memchr and its set-up.
std::size_t find_lf(std::string_view data, std::size_t pos) {
  constexpr std::uint64_t ones = 0x0101010101010101ULL;
  constexpr std::uint64_t high_bits = 0x8080808080808080ULL;
  constexpr std::uint64_t lfs = ones * '\n';
  while (pos + 8 <= data.size()) {
    std::uint64_t word;
    std::memcpy(&word, data.data() + pos, sizeof(word));
    const std::uint64_t x = word ^ lfs;
    // Nonzero iff some byte of x is zero, i.e. some byte of the word is LF.
    if (((x - ones) & ~x & high_bits) != 0) break;
    pos += 8;
  }
  for (; pos < data.size(); ++pos)
    if (data[pos] == '\n') return pos;
  return std::string_view::npos;
}

Line line_at(std::string_view data, std::size_t pos) {
  Line line;
  const std::size_t lf = find_lf(data, pos);
  if (lf == std::string_view::npos) {
    line.text = data.substr(pos);
    // A CR at the very end may be the first half of CRLF.
    if (!line.text.empty() && line.text.back() == '\r') line.text.remove_suffix(1);
    line.next = data.size();
    return line;
  }
  line.text = data.substr(pos, lf - pos);
  if (!line.text.empty() && line.text.back() == '\r') line.text.remove_suffix(1);
  line.next = lf + 1;
  line.complete = true;
  return line;
}

enum class StartLine {
  Complete,     // whole start line present and valid
  Reportable,   // cut off, but enough is present to report the message
  Truncated,    // cut off before anything worth reporting; consistent with a start line
  Invalid,      // not an HTTP/1.x start line
};

// Empty lines before a request line are ignored (RFC 9112 2.2: some clients send an extra
// CRLF after a body). Returns the position of the first non-empty line, or npos when the data
// ends in a lone CR that may still become an empty line.
std::size_t skip_empty_lines(std::string_view data, std::size_t pos) {
  while (pos < data.size()) {
    if (data[pos] == '\n') {
      ++pos;
    } else if (data[pos] == '\r') {
      if (pos + 1 == data.size()) return std::string_view::npos;
      if (data[pos + 1] != '\n') return pos;
      pos += 2;
    } else {
      return pos;
    }
  }
  return pos;
}

// ---- Framing shared by requests and responses -------------------------------------------

struct Framing {
  std::optional<std::uint64_t> content_length;
  bool content_length_invalid = false;
  bool transfer_encoding = false;
  bool chunked = false;  // final transfer coding is chunked
};

// Content-Length: 1*DIGIT; a list of identical values ("42, 42") is accepted as RFC 9112 6.3
// allows; differing values, also across repeated fields, make the length invalid.
void note_content_length(Framing& framing, std::string_view value) {
  std::size_t pos = 0;
  bool any = false;
  while (pos <= value.size()) {
    std::size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view item = trim_ows(value.substr(pos, comma - pos));
    pos = comma + 1;
    if (item.empty()) {
      framing.content_length_invalid = true;
      return;
    }
    std::uint64_t n = 0;
    for (const char ch : item) {
      const auto c = static_cast<unsigned char>(ch);
      if (!is_digit(c) || n > (kMaxContentLength - 9) / 10) {
        framing.content_length_invalid = true;
        return;
      }
      n = n * 10 + static_cast<std::uint64_t>(c - '0');
    }
    if (framing.content_length && *framing.content_length != n) {
      framing.content_length_invalid = true;
      return;
    }
    framing.content_length = n;
    any = true;
  }
  if (!any) framing.content_length_invalid = true;
}

// Repeated Transfer-Encoding fields form one list; only its final coding decides framing.
void note_transfer_encoding(Framing& framing, std::string_view value) {
  framing.transfer_encoding = true;
  std::string_view last;
  std::size_t pos = 0;
  while (pos <= value.size()) {
    std::size_t comma = value.find(',', pos);
    if (comma == std::string_view::npos) comma = value.size();
    const std::string_view item = trim_ows(value.substr(pos, comma - pos));
    if (!item.empty()) last = item;
    pos = comma + 1;
  }
  if (!last.empty()) framing.chunked = equals_lowercase(last, "chunked");
}

enum class HeadResult { Complete, Truncated, Malformed };

// Parses field lines from `pos` up to and including the empty line. `pos` ends after the last
// complete line consumed. Only complete lines are used: a cut-off value (say a traceparent
// missing its flags) would be wrong, so it is dropped.
template <typename OnField>
HeadResult parse_fields(std::string_view data, std::size_t& pos, std::vector<Header>& headers,
                        std::size_t& omitted, std::size_t max_headers, Framing& framing,
                        OnField&& on_field) {
  bool any_field = false;
  while (true) {
    const Line line = line_at(data, pos);
    if (!line.complete) return HeadResult::Truncated;
    if (line.text.empty()) {
      pos = line.next;
      return HeadResult::Complete;
    }
    const auto first = static_cast<unsigned char>(line.text.front());
    if (is_ows(first)) {
      // obs-fold (RFC 9112 5.2): a continuation of the previous field. Its content is not
      // merged into any field of interest; only tolerated after a field.
      if (!any_field) return HeadResult::Malformed;
      if (!all_field_value_chars(line.text)) return HeadResult::Malformed;
      pos = line.next;
      continue;
    }
    // The name is the tchars up to the colon (':' is no tchar): any other byte before it, a
    // missing colon and an empty name are all malformed. Rejects whitespace between name and
    // colon too (RFC 9112 5.1: MUST reject).
    std::size_t colon = 0;
    while (colon < line.text.size() && is_tchar(static_cast<unsigned char>(line.text[colon]))) ++colon;
    if (colon == 0 || colon == line.text.size() || line.text[colon] != ':') return HeadResult::Malformed;
    const std::string_view name = line.text.substr(0, colon);
    const std::string_view value = trim_ows(line.text.substr(colon + 1));
    if (!all_field_value_chars(value)) return HeadResult::Malformed;

    if (equals_lowercase(name, "content-length")) {
      note_content_length(framing, value);
    } else if (equals_lowercase(name, "transfer-encoding")) {
      note_transfer_encoding(framing, value);
    } else {
      on_field(name, value);
    }
    if (headers.size() < max_headers) {
      // One allocation for a typical head instead of growing 1, 2, 4, 8...
      if (headers.empty()) headers.reserve(std::min<std::size_t>(max_headers, 12));
      headers.push_back(Header{std::string(name), std::string(value)});
    } else {
      ++omitted;
    }
    any_field = true;
    pos = line.next;
  }
}

enum class BodyResult { Complete, Truncated, Invalid };

BodyResult skip_fixed(std::string_view data, std::size_t& pos, std::uint64_t length) {
  const std::size_t available = data.size() - pos;
  if (length > available) {
    pos = data.size();
    return BodyResult::Truncated;
  }
  pos += static_cast<std::size_t>(length);
  return BodyResult::Complete;
}

// Walks chunked framing (RFC 9112 7.1): size [; extensions] CRLF data CRLF ... 0 CRLF
// trailers CRLF. Extensions and trailer values are skipped without interpretation.
BodyResult skip_chunked(std::string_view data, std::size_t& pos) {
  while (true) {
    const Line line = line_at(data, pos);
    const std::string_view text = line.text;
    std::size_t i = 0;
    std::uint64_t size = 0;
    while (i < text.size() && hex_value(static_cast<unsigned char>(text[i])) >= 0) {
      if (i == kMaxChunkSizeDigits) return BodyResult::Invalid;
      size = (size << 4) | static_cast<std::uint64_t>(hex_value(static_cast<unsigned char>(text[i])));
      ++i;
    }
    if (i == 0) return (!line.complete && text.empty()) ? BodyResult::Truncated : BodyResult::Invalid;
    while (i < text.size() && is_ows(static_cast<unsigned char>(text[i]))) ++i;
    if (i < text.size() && text[i] != ';') return BodyResult::Invalid;
    for (; i < text.size(); ++i)
      if (!is_field_value_char(static_cast<unsigned char>(text[i]))) return BodyResult::Invalid;
    if (!line.complete) return BodyResult::Truncated;
    pos = line.next;

    if (size == 0) {
      // Trailer section: field lines up to an empty line.
      while (true) {
        const Line trailer = line_at(data, pos);
        if (!trailer.complete) return BodyResult::Truncated;
        pos = trailer.next;
        if (trailer.text.empty()) return BodyResult::Complete;
        const std::size_t colon = trailer.text.find(':');
        if (colon == std::string_view::npos || colon == 0) return BodyResult::Invalid;
        for (const char c : trailer.text.substr(0, colon))
          if (!is_tchar(static_cast<unsigned char>(c))) return BodyResult::Invalid;
      }
    }

    if (skip_fixed(data, pos, size) == BodyResult::Truncated) return BodyResult::Truncated;
    if (pos == data.size()) return BodyResult::Truncated;
    if (data[pos] == '\n') {
      pos += 1;
    } else if (data[pos] == '\r') {
      if (pos + 1 == data.size()) return BodyResult::Truncated;
      if (data[pos + 1] != '\n') return BodyResult::Invalid;
      pos += 2;
    } else {
      return BodyResult::Invalid;
    }
  }
}

ParseStop stop_for(BodyResult r) {
  switch (r) {
    case BodyResult::Complete: return ParseStop::Complete;
    case BodyResult::Truncated: return ParseStop::TruncatedBody;
    case BodyResult::Invalid: return ParseStop::InvalidChunk;
  }
  return ParseStop::InvalidChunk;
}

// ---- Requests ---------------------------------------------------------------------------

bool is_scheme_char(unsigned char c) {
  return is_alpha(c) || is_digit(c) || c == '+' || c == '-' || c == '.';
}

// "scheme://..." as far as it was captured; a cut-off target only has to be a prefix of one.
bool looks_like_absolute_form(std::string_view target, bool complete) {
  if (target.empty() || !is_alpha(static_cast<unsigned char>(target.front()))) return false;
  std::size_t i = 0;
  while (i < target.size() && is_scheme_char(static_cast<unsigned char>(target[i]))) ++i;
  const std::string_view rest = target.substr(i);
  if (rest.empty()) return !complete;
  if (!complete && is_prefix_of(rest, "://")) return true;
  return rest.size() > 3 && rest.substr(0, 3) == "://";
}

void split_target(ParsedRequest& req, bool complete) {
  const std::string_view target = req.target;
  if (target.empty()) return;
  std::string_view path_and_query;
  if (!target.empty() && target.front() == '/') {
    req.target_form = TargetForm::Origin;
    path_and_query = target;
  } else if (target == "*") {
    req.target_form = TargetForm::Asterisk;
    req.path = "*";
    return;
  } else if (looks_like_absolute_form(target, complete) && req.method != "CONNECT") {
    req.target_form = TargetForm::Absolute;
    const std::size_t colon = target.find(':');
    if (colon == std::string_view::npos || target.size() < colon + 3) {
      req.scheme = target.substr(0, colon == std::string_view::npos ? target.size() : colon);
      return;
    }
    req.scheme = target.substr(0, colon);
    const std::string_view after = target.substr(colon + 3);
    const std::size_t end = after.find_first_of("/?");
    req.authority = after.substr(0, end);
    if (end == std::string_view::npos) {
      // RFC 9112 3.2.2: an empty path in absolute-form stands for "/"; unknown when cut off.
      if (complete) req.path = "/";
      return;
    }
    path_and_query = after.substr(end);
  } else {
    req.target_form = TargetForm::Authority;
    req.authority = target;
    return;
  }
  const std::size_t q = path_and_query.find('?');
  req.path = path_and_query.substr(0, q);
  if (req.path.empty()) req.path = "/";
  if (q != std::string_view::npos) req.query = path_and_query.substr(q + 1);
}

// Which request-target shapes a method may use (RFC 9112 3.2): authority-form only for
// CONNECT, asterisk-form only for OPTIONS. A cut-off target must be a prefix of a valid one.
bool target_allowed(std::string_view method, std::string_view target, bool complete) {
  if (target.empty()) return !complete;
  if (target.front() == '/') return true;
  if (method == "CONNECT") return true;
  if (method == "OPTIONS" && target == "*") return true;
  return looks_like_absolute_form(target, complete);
}

StartLine parse_request_line(std::string_view data, std::size_t pos, const ParseOptions& options,
                             ParsedRequest& req, std::size_t& next) {
  const Line line = line_at(data, pos);
  const std::string_view text = line.text;
  next = line.next;

  std::size_t i = 0;
  while (i < text.size() && i <= kMaxExtensionMethodLength &&
         is_upper_alpha(static_cast<unsigned char>(text[i])))
    ++i;
  const std::string_view method = text.substr(0, i);
  const bool method_ok = is_known_method(method) ||
                         (options.allow_extension_methods && !method.empty() &&
                          method.size() <= kMaxExtensionMethodLength);
  if (i == text.size() && !line.complete) {
    // Still inside the method: plausible if it can become an accepted one.
    const bool plausible = options.allow_extension_methods
                               ? method.size() <= kMaxExtensionMethodLength
                               : is_prefix_of_known_method(method);
    // A lone CR stripped from the end would not belong in a method.
    if (plausible && text.size() == data.size() - pos) return StartLine::Truncated;
    return StartLine::Invalid;
  }
  if (i == text.size() || text[i] != ' ' || !method_ok) return StartLine::Invalid;
  req.method = method;
  ++i;

  const std::size_t target_start = i;
  while (i < text.size() && is_target_char(static_cast<unsigned char>(text[i]))) ++i;
  const std::string_view target = text.substr(target_start, i - target_start);
  const bool target_cut = i == text.size() && !line.complete;
  if (!target_cut && (i == text.size() || text[i] != ' ')) return StartLine::Invalid;
  if (!target_allowed(method, target, !target_cut)) return StartLine::Invalid;
  req.target = target;
  if (target_cut) {
    // "GET /a<CR>" may only become "GET /a<CRLF>", which lacks a version: not reportable.
    if (text.size() != data.size() - pos) return StartLine::Truncated;
    split_target(req, false);
    return StartLine::Reportable;
  }
  ++i;

  const std::string_view version = text.substr(i);
  if (!line.complete) {
    if (!is_prefix_of(version, kHttp10) && !is_prefix_of(version, kHttp11)) return StartLine::Invalid;
    if (version == kHttp10 || version == kHttp11) req.version = version.substr(5);
    split_target(req, true);
    return StartLine::Reportable;
  }
  if (version != kHttp10 && version != kHttp11) return StartLine::Invalid;
  req.version = version.substr(5);
  split_target(req, true);
  req.start_line_complete = true;
  return StartLine::Complete;
}

// ---- Responses --------------------------------------------------------------------------

bool is_reason_char(unsigned char c) { return is_field_value_char(c); }

StartLine parse_status_line(std::string_view data, std::size_t pos, ParsedResponse& resp,
                            std::size_t& next) {
  const Line line = line_at(data, pos);
  const std::string_view text = line.text;
  next = line.next;
  const bool cut = !line.complete;

  const std::string_view version = text.substr(0, std::min<std::size_t>(text.size(), kHttp11.size()));
  if (version.size() < kHttp11.size()) {
    if (!cut) return StartLine::Invalid;
    return (is_prefix_of(version, kHttp10) || is_prefix_of(version, kHttp11)) &&
                   text.size() == data.size() - pos
               ? StartLine::Truncated
               : StartLine::Invalid;
  }
  if (version != kHttp10 && version != kHttp11) return StartLine::Invalid;
  std::size_t i = version.size();
  if (i == text.size()) return cut ? StartLine::Truncated : StartLine::Invalid;
  if (text[i] != ' ') return StartLine::Invalid;
  ++i;

  unsigned code = 0;
  for (std::size_t d = 0; d < 3; ++d, ++i) {
    if (i == text.size()) return cut ? StartLine::Truncated : StartLine::Invalid;
    const auto c = static_cast<unsigned char>(text[i]);
    if (!is_digit(c) || (d == 0 && c == '0')) return StartLine::Invalid;
    code = code * 10 + (c - '0');
  }
  // The code is only certain once the byte after it (SP or the line end) is seen.
  if (i == text.size() && cut) return StartLine::Truncated;
  if (i < text.size() && text[i] != ' ') return StartLine::Invalid;
  const std::string_view reason = i < text.size() ? text.substr(i + 1) : std::string_view{};
  for (const char c : reason)
    if (!is_reason_char(static_cast<unsigned char>(c))) return StartLine::Invalid;

  resp.version = version.substr(5);
  resp.status_code = static_cast<std::uint16_t>(code);
  resp.reason = reason;
  resp.start_line_complete = !cut;
  return cut ? StartLine::Reportable : StartLine::Complete;
}

ParseStop stop_for_head(HeadResult r) {
  return r == HeadResult::Truncated ? ParseStop::TruncatedHead : ParseStop::MalformedHeader;
}

}  // namespace

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    auto x = static_cast<unsigned char>(a[i]);
    auto y = static_cast<unsigned char>(b[i]);
    if (x >= 'A' && x <= 'Z') x = static_cast<unsigned char>(x + ('a' - 'A'));
    if (y >= 'A' && y <= 'Z') y = static_cast<unsigned char>(y + ('a' - 'A'));
    if (x != y) return false;
  }
  return true;
}

namespace {
const Header* find_in(const std::vector<Header>& headers, std::string_view name) {
  for (const auto& h : headers)
    if (iequals(h.name, name)) return &h;
  return nullptr;
}
}  // namespace

const Header* ParsedRequest::find_header(std::string_view name) const { return find_in(headers, name); }
const Header* ParsedResponse::find_header(std::string_view name) const { return find_in(headers, name); }

std::string_view to_string(ParseStop stop) {
  switch (stop) {
    case ParseStop::Complete: return "complete";
    case ParseStop::TruncatedStartLine: return "truncated start line";
    case ParseStop::TruncatedHead: return "truncated head";
    case ParseStop::TruncatedBody: return "truncated body";
    case ParseStop::NotHttp: return "not HTTP/1.x";
    case ParseStop::MalformedHeader: return "malformed header line";
    case ParseStop::InvalidFraming: return "invalid body framing";
    case ParseStop::InvalidChunk: return "invalid chunked encoding";
    case ParseStop::BodyUntilClose: return "body delimited by connection close";
    case ParseStop::ProtocolSwitched: return "protocol switched";
    case ParseStop::MessageLimit: return "message limit reached";
  }
  return "unknown";
}

std::span<const std::string_view> known_methods() { return kKnownMethods; }

bool looks_like_http_request_start(std::string_view bytes) {
  return std::any_of(kKnownMethods.begin(), kKnownMethods.end(), [bytes](std::string_view m) {
    return bytes.size() > m.size() && bytes.substr(0, m.size()) == m && bytes[m.size()] == ' ';
  });
}

bool looks_like_http_response_start(std::string_view bytes) {
  return bytes.substr(0, 7) == "HTTP/1.";
}

std::vector<ParsedRequest> parse_requests(std::string_view captured, ParseStatus& status,
                                          const ParseOptions& options) {
  std::vector<ParsedRequest> requests;
  parse_requests_into(captured, status, requests, options);
  return requests;
}

void parse_requests_into(std::string_view captured, ParseStatus& status, std::vector<ParsedRequest>& requests,
                         const ParseOptions& options) {
  requests.clear();
  // Messages are large: growing 1, 2, 4 would move them twice for a typical pipelined capture.
  // Reserved on the first message only, so rejecting garbage allocates nothing.
  const auto keep = [&requests, &options](ParsedRequest&& request) {
    if (requests.empty()) requests.reserve(std::min<std::size_t>(options.max_messages, 4));
    requests.push_back(std::move(request));
  };
  status = ParseStatus{};
  std::size_t pos = 0;
  while (true) {
    const std::size_t start = skip_empty_lines(captured, pos);
    if (start == std::string_view::npos) {
      status.stop = ParseStop::TruncatedStartLine;
      return;
    }
    if (start == captured.size()) {
      status.consumed = captured.size();
      status.stop = ParseStop::Complete;
      return;
    }
    if (requests.size() >= options.max_messages) {
      status.stop = ParseStop::MessageLimit;
      return;
    }

    ParsedRequest req;
    req.offset = start;
    std::size_t next = 0;
    const StartLine start_line = parse_request_line(captured, start, options, req, next);
    if (start_line == StartLine::Invalid) {
      status.stop = ParseStop::NotHttp;
      return;
    }
    if (start_line == StartLine::Truncated) {
      status.stop = ParseStop::TruncatedStartLine;
      return;
    }
    if (start_line == StartLine::Reportable) {
      req.head_length = captured.size() - start;
      keep(std::move(req));
      status.stop = ParseStop::TruncatedStartLine;
      return;
    }

    pos = next;
    Framing framing;
    const HeadResult head = parse_fields(
        captured, pos, req.headers, req.headers_omitted, options.max_headers, framing,
        [&req](std::string_view name, std::string_view value) {
          if (equals_lowercase(name, "host")) {
            if (req.host.empty()) req.host = value;
          } else if (equals_lowercase(name, "traceparent")) {
            if (req.traceparent.empty()) {
              req.traceparent = value;
            } else {
              req.traceparent_repeated = true;
            }
          } else if (equals_lowercase(name, "tracestate")) {
            // Repeated fields combine into one comma-separated list (RFC 9110 5.3).
            if (!value.empty()) {
              if (!req.tracestate.empty()) req.tracestate += ',';
              req.tracestate += value;
            }
          } else if (equals_lowercase(name, "user-agent")) {
            if (req.user_agent.empty()) req.user_agent = value;
          }
        });
    req.content_length = framing.content_length_invalid ? std::nullopt : framing.content_length;
    req.chunked = framing.chunked;
    req.head_length = pos - start;
    if (head != HeadResult::Complete) {
      if (head == HeadResult::Truncated) req.head_length = captured.size() - start;
      keep(std::move(req));
      status.stop = stop_for_head(head);
      return;
    }
    req.head_complete = true;

    // RFC 9112 6.3 for requests: chunked if it is the final coding, any other transfer coding
    // leaves the length unknown; else Content-Length; else no body.
    BodyResult body = BodyResult::Complete;
    if (framing.transfer_encoding) {
      if (!framing.chunked) {
        keep(std::move(req));
        status.stop = ParseStop::InvalidFraming;
        return;
      }
      body = skip_chunked(captured, pos);
    } else if (framing.content_length_invalid) {
      keep(std::move(req));
      status.stop = ParseStop::InvalidFraming;
      return;
    } else if (framing.content_length) {
      body = skip_fixed(captured, pos, *framing.content_length);
    }
    req.body_complete = body == BodyResult::Complete;
    keep(std::move(req));
    if (body != BodyResult::Complete) {
      status.stop = stop_for(body);
      return;
    }
    status.consumed = pos;
  }
}

std::vector<ParsedResponse> parse_responses(std::string_view captured, ParseStatus& status,
                                            std::span<const ParsedRequest> requests,
                                            const ParseOptions& options) {
  std::vector<ParsedResponse> responses;
  parse_responses_into(captured, status, responses, requests, options);
  return responses;
}

void parse_responses_into(std::string_view captured, ParseStatus& status, std::vector<ParsedResponse>& responses,
                          std::span<const ParsedRequest> requests, const ParseOptions& options) {
  responses.clear();
  const auto keep = [&responses, &options](ParsedResponse&& response) {
    if (responses.empty()) responses.reserve(std::min<std::size_t>(options.max_messages, 4));
    responses.push_back(std::move(response));
  };
  status = ParseStatus{};
  std::size_t pos = 0;
  std::size_t final_responses = 0;
  while (true) {
    if (pos == captured.size()) {
      status.consumed = pos;
      status.stop = ParseStop::Complete;
      return;
    }
    if (responses.size() >= options.max_messages) {
      status.stop = ParseStop::MessageLimit;
      return;
    }

    ParsedResponse resp;
    resp.offset = pos;
    const std::size_t start = pos;
    std::size_t next = 0;
    const StartLine start_line = parse_status_line(captured, start, resp, next);
    if (start_line == StartLine::Invalid) {
      status.stop = ParseStop::NotHttp;
      return;
    }
    if (start_line == StartLine::Truncated) {
      status.stop = ParseStop::TruncatedStartLine;
      return;
    }
    if (start_line == StartLine::Reportable) {
      resp.head_length = captured.size() - start;
      keep(std::move(resp));
      status.stop = ParseStop::TruncatedStartLine;
      return;
    }

    pos = next;
    Framing framing;
    const HeadResult head = parse_fields(captured, pos, resp.headers, resp.headers_omitted,
                                         options.max_headers, framing,
                                         [](std::string_view, std::string_view) {});
    resp.content_length = framing.content_length_invalid ? std::nullopt : framing.content_length;
    resp.chunked = framing.chunked;
    resp.head_length = pos - start;
    if (head != HeadResult::Complete) {
      if (head == HeadResult::Truncated) resp.head_length = captured.size() - start;
      keep(std::move(resp));
      status.stop = stop_for_head(head);
      return;
    }
    resp.head_complete = true;

    const std::uint16_t code = resp.status_code;
    const std::string_view method =
        final_responses < requests.size() ? std::string_view(requests[final_responses].method)
                                          : std::string_view{};
    const bool interim = resp.interim();
    if (!interim) ++final_responses;

    // RFC 9112 6.3 for responses.
    if (code == 101 || (method == "CONNECT" && code >= 200 && code < 300)) {
      resp.body_complete = true;
      keep(std::move(resp));
      status.consumed = pos;
      status.stop = ParseStop::ProtocolSwitched;
      return;
    }
    BodyResult body = BodyResult::Complete;
    if (resp.informational() || code == 204 || code == 304 || method == "HEAD") {
      // No body, whatever the framing fields say.
    } else if (framing.transfer_encoding) {
      if (!framing.chunked) {
        keep(std::move(resp));
        status.stop = ParseStop::BodyUntilClose;
        return;
      }
      body = skip_chunked(captured, pos);
    } else if (framing.content_length_invalid) {
      keep(std::move(resp));
      status.stop = ParseStop::InvalidFraming;
      return;
    } else if (framing.content_length) {
      body = skip_fixed(captured, pos, *framing.content_length);
    } else {
      keep(std::move(resp));
      status.stop = ParseStop::BodyUntilClose;
      return;
    }
    resp.body_complete = body == BodyResult::Complete;
    keep(std::move(resp));
    if (body != BodyResult::Complete) {
      status.stop = stop_for(body);
      return;
    }
    status.consumed = pos;
  }
}

}  // namespace edgetrace::http
