#pragma once
// Event-name patterns, used to choose which events a receiver or a sink takes.
//
// A pattern is a dot-separated name whose segments are literal, `*` (exactly one segment) or a
// final `**` (all the remaining segments, at least one):
//   "lead.create"        only lead.create
//   "request.*"          request.create, request.update, request.close; not request.create.x
//   "message.create.**"  message.create.channel.whatsapp, ...; not message.create itself
//   "**"                 every event
// Patterns are immutable after parsing and safe to share between threads.

#include <string>
#include <string_view>
#include <vector>

#include "tdhook/result.hpp"

namespace tdhook {

class EventPattern {
 public:
  // Rejects an empty pattern, empty segments ("a..b", ".a"), `**` anywhere but last, and
  // segments mixing wildcards with text ("re*"). Error code: invalid_config.
  static Result<EventPattern> parse(std::string_view text);

  bool matches(std::string_view event) const noexcept;
  const std::string& text() const noexcept { return text_; }

 private:
  std::string text_;
  std::vector<std::string> segments_;
};

// A comma-separated list of patterns; an event matches the set if it matches any of them.
// An empty set (from an empty string) matches every event.
class PatternSet {
 public:
  static Result<PatternSet> parse(std::string_view comma_separated);
  bool matches(std::string_view event) const noexcept;
  bool empty() const noexcept { return patterns_.empty(); }
  const std::vector<EventPattern>& patterns() const noexcept { return patterns_; }

 private:
  std::vector<EventPattern> patterns_;
};

}  // namespace tdhook
