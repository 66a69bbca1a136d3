// What every store shares: the one-event and one-outcome forms of the batch calls, and the
// not-found error that `tdhook spool` recognises whichever store answered.
#include "store/store.hpp"

namespace tdhook::receiver {
namespace {

// The start of every not-found detail; is_not_found() recognises it.
constexpr std::string_view kNotFound = "no event with delivery id ";

}  // namespace

PutResult Store::put(NewEvent event) {
  std::vector<NewEvent> one;
  one.push_back(std::move(event));
  auto results = put_batch(std::move(one));
  return std::move(results.at(0));
}

Status Store::mark_delivered(const Delivery& d, const Attempt& attempt) {
  return mark_batch({Mark{&d, attempt, 0, false}});
}

Status Store::mark_failed(const Delivery& d, const Attempt& attempt,
                          std::int64_t next_attempt_at_ms, bool dead) {
  return mark_batch({Mark{&d, attempt, next_attempt_at_ms, dead}});
}

Result<ListMatcher> ListMatcher::make(const ListFilter& filter) {
  ListMatcher m;
  m.filter_ = filter;
  if (filter.event_pattern) {
    auto parsed = PatternSet::parse(*filter.event_pattern);
    if (!parsed) return std::move(parsed).error();
    m.pattern_ = std::move(*parsed);
  }
  return m;
}

bool ListMatcher::operator()(const DeliveryInfo& d) const {
  if (filter_.state && d.state != *filter_.state) return false;
  if (filter_.sink && d.sink != *filter_.sink) return false;
  if (pattern_ && !pattern_->matches(d.event)) return false;
  if (filter_.since_ms && d.received_at_ms < *filter_.since_ms) return false;
  if (filter_.until_ms && d.received_at_ms > *filter_.until_ms) return false;
  return true;
}

Error not_found_error(const std::string& delivery_id) {
  return Error{ErrorCode::invalid_input, std::string(kNotFound) + "'" + delivery_id + "'"};
}

bool is_not_found(const Error& error) noexcept {
  return error.code == ErrorCode::invalid_input && error.detail.starts_with(kNotFound);
}

}  // namespace tdhook::receiver
