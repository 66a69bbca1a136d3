#include "tdhook/event.hpp"

#include "envelope.hpp"

namespace tdhook {

Result<Event> Event::parse(std::string_view body) { return EventBuilder::parse(body); }

}  // namespace tdhook
