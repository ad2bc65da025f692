#include "capabilities/bpf_program.h"

#include <cerrno>
#include <string_view>

#include "capabilities/system_files.h"

namespace edgetrace::capabilities::bpf_asm {

void append_load_map(std::vector<bpf_insn>& insns, Reg dst, int map_fd) {
  insns.push_back(make(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_MAP_FD, 0, map_fd));
  insns.push_back(make(0, 0, 0, 0, 0));
}

void append_load_function(std::vector<bpf_insn>& insns, Reg dst, std::int32_t relative_insn) {
  insns.push_back(make(BPF_LD | BPF_DW | BPF_IMM, dst, BPF_PSEUDO_FUNC, 0, relative_insn));
  insns.push_back(make(0, 0, 0, 0, 0));
}

}  // namespace edgetrace::capabilities::bpf_asm

namespace edgetrace::capabilities {
namespace {

// The verifier's reason is near the end of its log, before the statistics lines.
std::string verifier_reason(std::string_view log) {
  std::vector<std::string> lines;
  std::size_t pos = 0;
  while (pos < log.size()) {
    auto end = log.find('\n', pos);
    if (end == std::string_view::npos) end = log.size();
    auto line = trim(log.substr(pos, end - pos));
    pos = end + 1;
    if (line.empty() || line.starts_with("processed ") || line.starts_with("verification time") ||
        line.starts_with("stack depth") || line.starts_with("-- END PROG LOAD LOG --"))
      continue;
    lines.push_back(std::move(line));
  }
  if (lines.empty()) return {};
  std::string reason = lines.back();
  // "unknown func bpf_probe_write_user#36" is self-contained; other errors read better with context.
  if (lines.size() >= 2 && reason.size() < 40) reason = lines[lines.size() - 2] + " / " + reason;
  return reason;
}

}  // namespace

LoadedProgram load_program(bpf_prog_type type, const char* name, std::span<const bpf_insn> insns,
                           bpf_prog_load_opts opts) {
  std::string log(64 * 1024, '\0');
  opts.sz = sizeof(opts);
  // log_level 0 with a buffer: libbpf retries with the log only if the first load fails.
  opts.log_level = 0;
  opts.log_buf = log.data();
  opts.log_size = static_cast<std::uint32_t>(log.size());
  LoadedProgram result;
  const int fd = bpf_prog_load(type, name, "GPL", insns.data(), insns.size(), &opts);
  if (fd >= 0) {
    result.fd.reset(fd);
    return result;
  }
  const int error = fd < 0 ? -fd : errno;
  result.error = "load refused: " + errno_text(error);
  const auto reason = verifier_reason(std::string_view(log.c_str()));
  if (!reason.empty()) result.error += ": verifier: " + reason;
  return result;
}

CreatedMap create_map(bpf_map_type type, const char* name, std::uint32_t key_size, std::uint32_t value_size,
                      std::uint32_t max_entries) {
  CreatedMap result;
  const int fd = bpf_map_create(type, name, key_size, value_size, max_entries, nullptr);
  if (fd >= 0)
    result.fd.reset(fd);
  else
    result.error = std::string("map creation refused: ") + errno_text(-fd);
  return result;
}

FireCounter::FireCounter()
    : map_(create_map(BPF_MAP_TYPE_ARRAY, "et_caps_count", sizeof(std::uint32_t), sizeof(std::uint64_t), 1)) {}

std::uint64_t FireCounter::value() const {
  std::uint32_t key = 0;
  std::uint64_t count = 0;
  if (bpf_map_lookup_elem(map_.fd.get(), &key, &count) != 0) return 0;
  return count;
}

std::vector<bpf_insn> FireCounter::program(std::int32_t return_value) const {
  using namespace bpf_asm;
  std::vector<bpf_insn> insns;
  insns.push_back(store_imm_u32(R10, -4, 0));
  insns.push_back(mov64_reg(R2, R10));
  insns.push_back(add64_imm(R2, -4));
  append_load_map(insns, R1, map_.fd.get());
  insns.push_back(call(BPF_FUNC_map_lookup_elem));
  insns.push_back(jump_if_equal(R0, 0, 3));
  insns.push_back(load_u64(R1, R0, 0));
  insns.push_back(add64_imm(R1, 1));
  insns.push_back(store_u64(R0, R1, 0));
  insns.push_back(mov64_imm(R0, return_value));
  insns.push_back(exit_insn());
  return insns;
}

}  // namespace edgetrace::capabilities
