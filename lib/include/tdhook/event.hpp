#pragma once
// A Tiledesk notification whose envelope has been parsed (and, when it comes from
// Verifier::verify, authenticated).
//
// Tiledesk POSTs {"timestamp":<ms>,"payload":{...},"hook":{...},"token":"<JWT>"}. An Event owns a
// copy of the exact body bytes and gives:
//   - the hook (the subscription that fired, as Tiledesk sent it) as a typed struct;
//   - the event name (only Tiledesk's `hook.event` carries it) and Tiledesk's timestamp;
//   - the payload, hook and token as raw JSON text pointing into the body (unknown events and
//     unknown fields stay reachable this way);
//   - typed access to the payload (models.hpp). A payload that does not fit the model asked for
//     is an error there (payload_mismatch), not at verification.
// An Event is immutable; it may be read from several threads at once.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "tdhook/algorithm.hpp"
#include "tdhook/result.hpp"

namespace tdhook {

// The subscription as sent in `hook` (Tiledesk deletes `secret` and `global` before sending).
struct Hook {
  std::string id;                       // _id
  std::string target;                   // the URL Tiledesk posted to
  std::string event;                    // event name, e.g. "lead.create"
  std::string project_id;               // id_project
  std::string created_by;               // createdBy
  std::string created_at;               // createdAt, ISO-8601
  std::string updated_at;               // updatedAt, ISO-8601
  std::optional<std::int64_t> version;  // __v
};

// How an event was authenticated.
struct Verification {
  bool secret = false;                 // x-hook-secret matched a configured secret
  std::optional<Algorithm> token_alg;  // the token verified with this algorithm
  bool global_key = false;             // ... with a global-subscription key
  // "secret+HS256", "secret", "HS256", "RS256 (global)", "none", ...
  std::string describe() const;
};

struct Request;
struct Message;
struct Lead;
struct Faq;
struct FaqKb;
struct ProjectUser;
struct Department;
struct Group;
struct Project;
struct User;
struct CustomEvent;
struct OperatorSelect;
struct RequestClose;

class Event {
 public:
  // Parses an envelope without authenticating it: the body must be a JSON object (else
  // malformed_body) with a `hook` object holding string `_id`, `event` and `id_project`, a
  // numeric `timestamp` and no duplicated key in the envelope or the hook (else
  // malformed_envelope). `token` may be absent here. Used by the receiver's --no-verify mode and
  // by the tools; Verifier::verify applies the same rules.
  static Result<Event> parse(std::string_view body);

  const Hook& hook() const noexcept { return hook_; }
  const std::string& name() const noexcept { return hook_.event; }
  std::int64_t timestamp() const noexcept { return timestamp_; }  // Tiledesk's, ms since epoch
  const Verification& verification() const noexcept { return verification_; }

  std::string_view body() const noexcept { return body_; }  // the exact bytes received
  std::string_view payload_json() const noexcept { return slice(payload_); }
  std::string_view hook_json() const noexcept { return slice(hook_span_); }
  // The JWT. It is an API credential for the Tiledesk project: never log it. Empty if absent.
  std::string_view token() const noexcept { return slice(token_); }

  // Typed payload access (definitions in models.hpp). Each fails with payload_mismatch when the
  // payload does not have the model's shape; the model does not check the event name, so
  // `message()` also reads message.create.channel.* payloads.
  Result<Request> request() const;
  Result<Message> message() const;
  Result<Lead> lead() const;
  Result<Faq> faq() const;
  Result<FaqKb> faq_kb() const;
  Result<ProjectUser> project_user() const;
  Result<Department> department() const;
  Result<Group> group() const;
  Result<Project> project() const;
  Result<User> user() const;
  Result<CustomEvent> custom_event() const;
  Result<OperatorSelect> operator_select() const;
  Result<RequestClose> request_close() const;

 private:
  struct Span {
    std::size_t offset = 0;
    std::size_t size = 0;
  };
  std::string_view slice(Span s) const noexcept {
    return std::string_view(body_).substr(s.offset, s.size);
  }

  friend struct EventBuilder;  // lib/src: fills an Event from a parsed envelope
  std::string body_;
  Span payload_, hook_span_, token_;
  bool token_present_ = false;
  Hook hook_;
  std::int64_t timestamp_ = 0;
  Verification verification_;
};

}  // namespace tdhook
