// fuzz_make_corpus SOURCE_DIR OUT_DIR: writes the seeds of seeds.hpp, derived from the samples
// and fixtures, as OUT_DIR/<target>/<name> (scripts/fuzz adds fuzz/corpus/<target>/ to them).
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "seeds.hpp"

int main(int argc, char** argv) {
  if (argc != 3) {
    std::fprintf(stderr, "usage: fuzz_make_corpus SOURCE_DIR OUT_DIR\n");
    return 2;
  }
  const std::filesystem::path out = argv[2];
  try {
    for (const auto& seed : tdhook::fuzz::derive_seeds(argv[1])) {
      std::filesystem::create_directories(out / seed.target);
      std::ofstream file(out / seed.target / seed.name, std::ios::binary | std::ios::trunc);
      file << seed.content;
      if (!file)
        throw std::runtime_error("cannot write " + (out / seed.target / seed.name).string());
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "fuzz_make_corpus: %s\n", e.what());
    return 1;
  }
  return 0;
}
