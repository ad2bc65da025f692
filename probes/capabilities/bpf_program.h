// Hand-assembled BPF for the capability probes. The probes are a handful of instructions
// each; assembling them here keeps doctor free of a clang/BPF build step and of any
// skeleton that might itself fail to load for an unrelated reason.
#pragma once

#include <bpf/bpf.h>
#include <linux/bpf.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "capabilities/unique_fd.h"

namespace edgetrace::capabilities::bpf_asm {

enum Reg : std::uint8_t { R0 = 0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10 };

constexpr bpf_insn make(std::uint8_t code, std::uint8_t dst, std::uint8_t src, std::int16_t off, std::int32_t imm) {
  bpf_insn insn{};
  insn.code = code;
  insn.dst_reg = dst & 0xf;
  insn.src_reg = src & 0xf;
  insn.off = off;
  insn.imm = imm;
  return insn;
}

constexpr bpf_insn mov64_imm(Reg dst, std::int32_t imm) { return make(BPF_ALU64 | BPF_MOV | BPF_K, dst, 0, 0, imm); }
constexpr bpf_insn mov64_reg(Reg dst, Reg src) { return make(BPF_ALU64 | BPF_MOV | BPF_X, dst, src, 0, 0); }
constexpr bpf_insn add64_imm(Reg dst, std::int32_t imm) { return make(BPF_ALU64 | BPF_ADD | BPF_K, dst, 0, 0, imm); }
constexpr bpf_insn rsh64_imm(Reg dst, std::int32_t imm) { return make(BPF_ALU64 | BPF_RSH | BPF_K, dst, 0, 0, imm); }
constexpr bpf_insn store_imm_u32(Reg base, std::int16_t off, std::int32_t imm) {
  return make(BPF_ST | BPF_MEM | BPF_W, base, 0, off, imm);
}
constexpr bpf_insn store_imm_u64(Reg base, std::int16_t off, std::int32_t imm) {
  return make(BPF_ST | BPF_MEM | BPF_DW, base, 0, off, imm);
}
constexpr bpf_insn load_u64(Reg dst, Reg base, std::int16_t off) { return make(BPF_LDX | BPF_MEM | BPF_DW, dst, base, off, 0); }
constexpr bpf_insn load_u32(Reg dst, Reg base, std::int16_t off) { return make(BPF_LDX | BPF_MEM | BPF_W, dst, base, off, 0); }
constexpr bpf_insn store_u64(Reg base, Reg src, std::int16_t off) { return make(BPF_STX | BPF_MEM | BPF_DW, base, src, off, 0); }
constexpr bpf_insn jump_if_equal(Reg dst, std::int32_t imm, std::int16_t skip) {
  return make(BPF_JMP | BPF_JEQ | BPF_K, dst, 0, skip, imm);
}
constexpr bpf_insn jump_if_not_equal(Reg dst, std::int32_t imm, std::int16_t skip) {
  return make(BPF_JMP | BPF_JNE | BPF_K, dst, 0, skip, imm);
}
constexpr bpf_insn call(std::int32_t helper) { return make(BPF_JMP | BPF_CALL, 0, 0, 0, helper); }
constexpr bpf_insn exit_insn() { return make(BPF_JMP | BPF_EXIT, 0, 0, 0, 0); }

// Two-slot 64-bit immediate: a map fd, or (BPF_PSEUDO_FUNC) a subprogram `imm` insns after the next one.
void append_load_map(std::vector<bpf_insn>& insns, Reg dst, int map_fd);
void append_load_function(std::vector<bpf_insn>& insns, Reg dst, std::int32_t relative_insn);

}  // namespace edgetrace::capabilities::bpf_asm

namespace edgetrace::capabilities {

struct LoadedProgram {
  UniqueFd fd;
  std::string error;  // errno text plus the verifier's last words; empty on success
};

// bpf_prog_load with a verifier log; `opts` may carry attach type, BTF ids, func info.
LoadedProgram load_program(bpf_prog_type type, const char* name, std::span<const bpf_insn> insns,
                           bpf_prog_load_opts opts = {});

struct CreatedMap {
  UniqueFd fd;
  std::string error;
};
CreatedMap create_map(bpf_map_type type, const char* name, std::uint32_t key_size, std::uint32_t value_size,
                      std::uint32_t max_entries);

// A one-slot u64 array the probe programs increment, so a check can tell "attached" from "fires".
class FireCounter {
 public:
  FireCounter();
  [[nodiscard]] bool valid() const { return map_.fd.valid(); }
  [[nodiscard]] const std::string& error() const { return map_.error; }
  [[nodiscard]] std::uint64_t value() const;
  // Increments the counter, then returns `return_value`.
  [[nodiscard]] std::vector<bpf_insn> program(std::int32_t return_value) const;

 private:
  CreatedMap map_;
};

}  // namespace edgetrace::capabilities
