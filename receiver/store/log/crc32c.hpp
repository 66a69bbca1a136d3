#pragma once
// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), the checksum of the event log's
// entries: the SSE4.2 crc32 instruction computes it at several GB/s where the CPU has one, which
// keeps checksumming a ~7 KB record far below the cost of its write().

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace tdhook::receiver::log {

// The CRC-32C of `size` bytes at `data`. `crc` is the CRC-32C of the bytes before them, so that
// crc32c(b, n, crc32c(a, m)) is the CRC of a followed by b; 0 starts a new one.
std::uint32_t crc32c(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;
inline std::uint32_t crc32c(std::string_view bytes, std::uint32_t crc = 0) noexcept {
  return crc32c(bytes.data(), bytes.size(), crc);
}

// The table-driven (slice-by-8) implementation, used where the CPU has no SSE4.2; exposed so
// that tests can check both against each other.
std::uint32_t crc32c_software(const void* data, std::size_t size, std::uint32_t crc = 0) noexcept;
// Whether crc32c() uses the CPU's crc32 instruction.
bool crc32c_uses_hardware() noexcept;

}  // namespace tdhook::receiver::log
