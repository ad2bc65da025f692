// CRC32C (Castagnoli), the checksum of every queue record. Hand-written: see docs/queue.md
// ("Why hand-written") — none of the installed libraries exports a CRC32C.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace edgetrace::queue {

// Extends `crc` (0 for a fresh checksum) over `data`. Uses the SSE4.2 crc32 instruction when
// the CPU has it (checked once at run time), otherwise a slicing-by-8 table.
std::uint32_t crc32c(std::uint32_t crc, const void* data, std::size_t size);

inline std::uint32_t crc32c(std::string_view bytes) { return crc32c(0, bytes.data(), bytes.size()); }

// Both implementations, exposed so tests can check they agree.
std::uint32_t crc32c_portable(std::uint32_t crc, const void* data, std::size_t size);
std::uint32_t crc32c_hardware(std::uint32_t crc, const void* data, std::size_t size);
bool crc32c_hardware_available();

}  // namespace edgetrace::queue
