// One libFuzzer target: TDHOOK_FUZZ_TARGET names the entry point of entry_points.hpp (CMake
// builds this file once per target). An oracle's complaint aborts, so libFuzzer keeps the input
// like a crash.
#include <cstdio>
#include <cstdlib>

#include "entry_points.hpp"

#ifndef TDHOOK_FUZZ_TARGET
#error "TDHOOK_FUZZ_TARGET must name an entry point of entry_points.hpp"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto report = tdhook::fuzz::TDHOOK_FUZZ_TARGET(input);
  if (!report.problem.empty()) {
    std::fprintf(stderr, "tdhook fuzz oracle: %s\n", report.problem.c_str());
    std::abort();
  }
  return 0;
}
