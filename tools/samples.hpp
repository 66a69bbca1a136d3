#pragma once
// The bundled sample notifications (samples/events/<event>.json: timestamp, payload and hook as
// Tiledesk sends them, without a token). Searched, in order, in:
//   1. $TDHOOK_SAMPLES_DIR
//   2. <directory of the tdhook executable>/../share/tdhook/samples/events (installed)
//   3. TDHOOK_SOURCE_SAMPLES_DIR, when the build defines it
//   4. <source dir>/samples/events, read from the build tree's CMakeCache.txt beside the
//      executable's directory (running from a build tree without installing)

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook::tools {

// The first existing directory of the list above, or nullopt.
std::optional<std::filesystem::path> samples_dir();

// Event names of every sample, sorted (files <event>.json; other files such as
// operator.select.response.json, which is not a notification, are left out).
std::vector<std::string> sample_names();

// The text of the sample for `name`. invalid_input when there is no such sample (the detail
// says where it looked) or it cannot be read.
Result<std::string> read_sample(std::string_view name);

}  // namespace tdhook::tools
