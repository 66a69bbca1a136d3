#include "tdhook/pattern.hpp"

namespace tdhook {
namespace {

// Splits on '.', keeping empty segments so that they can be rejected.
std::vector<std::string_view> split_dots(std::string_view text) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    std::size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) {
      out.push_back(text.substr(start));
      return out;
    }
    out.push_back(text.substr(start, dot - start));
    start = dot + 1;
  }
}

}  // namespace

Result<EventPattern> EventPattern::parse(std::string_view text) {
  if (text.empty()) return Error{ErrorCode::invalid_config, "empty event pattern"};
  EventPattern p;
  p.text_ = std::string(text);
  auto segments = split_dots(text);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    std::string_view s = segments[i];
    std::string where = "event pattern \"" + p.text_ + "\"";
    if (s.empty()) return Error{ErrorCode::invalid_config, where + " has an empty segment"};
    if (s == "**" && i + 1 != segments.size())
      return Error{ErrorCode::invalid_config, where + ": ** may only be the last segment"};
    if (s != "*" && s != "**" && s.find('*') != std::string_view::npos)
      return Error{ErrorCode::invalid_config, where + ": * must be a whole segment"};
    p.segments_.emplace_back(s);
  }
  return p;
}

bool EventPattern::matches(std::string_view event) const noexcept {
  std::size_t pos = 0;
  for (std::size_t i = 0; i < segments_.size(); ++i) {
    if (pos > event.size()) return false;
    const std::string& seg = segments_[i];
    if (seg == "**") return pos < event.size();  // at least one more segment
    std::size_t dot = event.find('.', pos);
    std::string_view part =
        event.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos);
    if (part.empty()) return false;
    if (seg != "*" && part != seg) return false;
    pos = dot == std::string_view::npos ? event.size() + 1 : dot + 1;
  }
  return pos == event.size() + 1;  // consumed the whole name, nothing left over
}

Result<PatternSet> PatternSet::parse(std::string_view comma_separated) {
  PatternSet set;
  std::size_t start = 0;
  while (start <= comma_separated.size()) {
    std::size_t comma = comma_separated.find(',', start);
    std::string_view item = comma_separated.substr(
        start, comma == std::string_view::npos ? std::string_view::npos : comma - start);
    while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
    while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
    if (!item.empty()) {
      auto p = EventPattern::parse(item);
      if (!p) return std::move(p).error();
      set.patterns_.push_back(std::move(p).value());
    } else if (comma != std::string_view::npos) {
      return Error{ErrorCode::invalid_config,
                   "empty pattern in list \"" + std::string(comma_separated) + "\""};
    }
    if (comma == std::string_view::npos) break;
    start = comma + 1;
  }
  return set;
}

bool PatternSet::matches(std::string_view event) const noexcept {
  if (patterns_.empty()) return true;
  for (const auto& p : patterns_)
    if (p.matches(event)) return true;
  return false;
}

}  // namespace tdhook
