#include "samples.hpp"

#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <fstream>
#include <sstream>

namespace tdhook::tools {
namespace {

namespace fs = std::filesystem;

std::optional<fs::path> executable_dir() {
  std::error_code ec;
  const auto exe = fs::read_symlink("/proc/self/exe", ec);
  if (ec) return std::nullopt;
  return exe.parent_path();
}

// A build tree keeps the source directory in CMakeCache.txt; the executable is one level down.
std::optional<fs::path> build_tree_samples(const fs::path& exe_dir) {
  std::ifstream cache(exe_dir.parent_path() / "CMakeCache.txt");
  constexpr std::string_view kKey = "tdhook_SOURCE_DIR:STATIC=";
  for (std::string line; std::getline(cache, line);) {
    if (line.rfind(kKey, 0) == 0) return fs::path(line.substr(kKey.size())) / "samples" / "events";
  }
  return std::nullopt;
}

std::vector<fs::path> candidates() {
  std::vector<fs::path> dirs;
  if (const char* env = std::getenv("TDHOOK_SAMPLES_DIR"); env != nullptr && *env != '\0') {
    dirs.emplace_back(env);
  }
  const auto exe_dir = executable_dir();
  if (exe_dir) dirs.push_back(*exe_dir / ".." / "share" / "tdhook" / "samples" / "events");
#ifdef TDHOOK_SOURCE_SAMPLES_DIR
  dirs.emplace_back(TDHOOK_SOURCE_SAMPLES_DIR);
#endif
  if (exe_dir) {
    if (auto tree = build_tree_samples(*exe_dir)) dirs.push_back(std::move(*tree));
  }
  return dirs;
}

bool is_notification_name(std::string_view stem) {
  return !stem.empty() && stem.size() <= 200 && !stem.ends_with(".response") &&
         stem.find('/') == std::string_view::npos && stem.find("..") == std::string_view::npos &&
         stem.front() != '.';
}

}  // namespace

std::optional<fs::path> samples_dir() {
  for (const auto& dir : candidates()) {
    std::error_code ec;
    if (fs::is_directory(dir, ec)) return fs::weakly_canonical(dir, ec);
  }
  return std::nullopt;
}

std::vector<std::string> sample_names() {
  std::vector<std::string> names;
  const auto dir = samples_dir();
  if (!dir) return names;
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(*dir, ec)) {
    const auto& path = entry.path();
    if (path.extension() != ".json") continue;
    const auto stem = path.stem().string();
    if (is_notification_name(stem)) names.push_back(stem);
  }
  std::sort(names.begin(), names.end());
  return names;
}

Result<std::string> read_sample(std::string_view name) {
  const auto dir = samples_dir();
  if (!dir) {
    return Error{ErrorCode::invalid_input,
                 "no sample directory found (set TDHOOK_SAMPLES_DIR to samples/events)"};
  }
  if (!is_notification_name(name)) {
    return Error{ErrorCode::invalid_input, "invalid sample name '" + std::string(name) + "'"};
  }
  const auto path = *dir / (std::string(name) + ".json");
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    return Error{ErrorCode::invalid_input, "no sample '" + std::string(name) + "' in " +
                                               dir->string() + " (see `tdhook events`)"};
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace tdhook::tools
