// Prints, for every loaded BPF program whose name starts with one of the given prefixes, one
// line per source line the kernel's JIT recorded: "<jited address hex> <program> <source>".
// bench/bpf_profile.sh joins perf samples to it, which gives BPF time by source line on a
// machine whose bpftool cannot disassemble JIT images (Debian's is built without libbfd).
//
//   bpf_line_table PREFIX...
#include <bpf/bpf.h>
#include <bpf/btf.h>

#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/unique_fd.h"

namespace {

struct BtfDeleter {
  void operator()(btf* b) const { btf__free(b); }
};

bool wanted(std::string_view name, const std::vector<std::string_view>& prefixes) {
  for (const auto prefix : prefixes)
    if (name.starts_with(prefix)) return true;
  return false;
}

void print_lines(int fd, const bpf_prog_info& summary) {
  const auto line_count = std::min(summary.nr_line_info, summary.nr_jited_line_info);
  if (line_count == 0 || summary.line_info_rec_size < sizeof(bpf_line_info)) return;
  std::vector<unsigned char> lines(static_cast<std::size_t>(summary.nr_line_info) * summary.line_info_rec_size);
  std::vector<__u64> addresses(summary.nr_jited_line_info);
  bpf_prog_info info{};
  info.nr_line_info = summary.nr_line_info;
  info.line_info_rec_size = summary.line_info_rec_size;
  info.line_info = reinterpret_cast<__u64>(lines.data());
  info.nr_jited_line_info = summary.nr_jited_line_info;
  info.jited_line_info_rec_size = sizeof(__u64);
  info.jited_line_info = reinterpret_cast<__u64>(addresses.data());
  __u32 length = sizeof(info);
  if (bpf_obj_get_info_by_fd(fd, &info, &length) != 0) return;
  const std::unique_ptr<btf, BtfDeleter> types(btf__load_from_kernel_by_id(summary.btf_id));
  if (!types) return;
  for (__u32 i = 0; i < line_count; ++i) {
    const auto* line = reinterpret_cast<const bpf_line_info*>(lines.data() + i * summary.line_info_rec_size);
    const char* source = btf__name_by_offset(types.get(), line->line_off);
    std::printf("%llx %s %s\n", static_cast<unsigned long long>(addresses[i]), summary.name, source ? source : "?");
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s PREFIX... (program name prefixes)\n", argv[0]);
    return 2;
  }
  const std::vector<std::string_view> prefixes(argv + 1, argv + argc);
  __u32 id = 0;
  while (bpf_prog_get_next_id(id, &id) == 0) {
    const edgetrace::UniqueFd fd(bpf_prog_get_fd_by_id(id));
    if (!fd) continue;
    bpf_prog_info summary{};
    __u32 length = sizeof(summary);
    if (bpf_obj_get_info_by_fd(fd.get(), &summary, &length) != 0 || !wanted(summary.name, prefixes)) continue;
    print_lines(fd.get(), summary);
  }
  return 0;
}
