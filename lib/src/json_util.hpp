#pragma once
// Small helpers over simdjson's DOM shared by the envelope, JWS and model readers.
#include <simdjson.h>

#include <string_view>
#include <unordered_set>
#include <vector>

namespace tdhook::detail {

// True if `object` has the same key twice. Linear scan for small objects (the envelope, a hook, a
// JWT header), a hash set beyond that so that a hostile object cannot make it quadratic.
inline bool has_duplicate_key(simdjson::dom::object object) {
  std::size_t n = object.size();
  if (n <= 16) {
    std::string_view keys[16];
    std::size_t k = 0;
    for (auto field : object) {
      for (std::size_t i = 0; i < k; ++i)
        if (keys[i] == field.key) return true;
      keys[k++] = field.key;
    }
    return false;
  }
  std::unordered_set<std::string_view> seen;
  seen.reserve(n);
  for (auto field : object)
    if (!seen.insert(field.key).second) return true;
  return false;
}

// A thread's DOM parser, reused across calls so that its buffers are allocated once.
inline simdjson::dom::parser& thread_dom_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

}  // namespace tdhook::detail
