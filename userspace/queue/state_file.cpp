#include "queue/state_file.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <sstream>

#include "queue/segment_format.h"
#include "queue/unique_fd.h"

namespace edgetrace::queue {
namespace {

constexpr std::string_view kFirstLine = "edgetrace-queue-state 1";

std::string one_line(std::string text) {
  for (char& c : text)
    if (c == '\n' || c == '\r') c = ' ';
  return text;
}

}  // namespace

std::optional<PersistedState> read_state_file(const std::filesystem::path& path) {
  std::ifstream in(path);
  if (!in) return std::nullopt;
  std::string line;
  if (!std::getline(in, line) || line != kFirstLine) return std::nullopt;
  PersistedState state;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    const std::string key = line.substr(0, space);
    const std::string value = space == std::string::npos ? std::string() : line.substr(space + 1);
    auto number = [&](std::uint64_t& out) {
      std::from_chars(value.data(), value.data() + value.size(), out);
    };
    if (key == "dropped_batches") number(state.dropped_batches);
    else if (key == "dropped_spans") number(state.dropped_spans);
    else if (key == "corrupted_records") number(state.corrupted_records);
    else if (key == "write_errors") number(state.write_errors);
    else if (key == "quarantined_segments") number(state.quarantined_segments);
    else if (key == "torn_tails_truncated") number(state.torn_tails_truncated);
    else if (key == "updated_unix_nanos") number(state.updated_unix_nanos);
    else if (key == "last_error") state.last_error = value;
    else if (key == "last_export_error") state.last_export_error = value;
  }
  return state;
}

bool write_state_file(const std::filesystem::path& path, const PersistedState& state, bool durable) {
  std::ostringstream text;
  text << kFirstLine << '\n'
       << "dropped_batches " << state.dropped_batches << '\n'
       << "dropped_spans " << state.dropped_spans << '\n'
       << "corrupted_records " << state.corrupted_records << '\n'
       << "write_errors " << state.write_errors << '\n'
       << "quarantined_segments " << state.quarantined_segments << '\n'
       << "torn_tails_truncated " << state.torn_tails_truncated << '\n'
       << "updated_unix_nanos " << state.updated_unix_nanos << '\n'
       << "last_error " << one_line(state.last_error) << '\n'
       << "last_export_error " << one_line(state.last_export_error) << '\n';
  const std::string bytes = text.str();
  std::filesystem::path temporary = path;
  temporary += ".tmp";
  {
    UniqueFd fd(::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640));
    if (!fd) return false;
    if (!pwrite_fully(fd.get(), bytes.data(), bytes.size(), 0)) return false;
    if (durable && ::fdatasync(fd.get()) != 0) return false;
  }
  if (::rename(temporary.c_str(), path.c_str()) != 0) return false;
  if (durable) fsync_directory(path.parent_path());
  return true;
}

}  // namespace edgetrace::queue
