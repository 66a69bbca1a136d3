#pragma once
// Parsing Tiledesk's envelope {"timestamp","payload","hook","token"} once, with simdjson, into an
// Event. Shared by Event::parse (no authentication) and Verifier::verify.
#include <optional>
#include <string>
#include <string_view>

#include "tdhook/event.hpp"
#include "tdhook/result.hpp"

namespace tdhook {

// Fills an Event's private fields (Event names it a friend).
struct EventBuilder {
  // Copies `body` into a new Event (with the padding simdjson needs) and parses its envelope.
  // Errors: malformed_body, malformed_envelope. A missing token is not an error here
  // (Event::token() is then empty); a token that is not a string is malformed_envelope.
  static Result<Event> parse(std::string_view body);
  static void set_verification(Event& event, const Verification& v) { event.verification_ = v; }
  static bool has_token(const Event& event) { return event.token_present_; }
};

}  // namespace tdhook
