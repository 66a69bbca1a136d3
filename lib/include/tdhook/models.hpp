#pragma once
// Typed payload models: the objects Tiledesk sends in a notification's `payload`
// (tiledesk-protocol.md §6, and the operator.select routing result of §4.3).
//
// Each struct mirrors one Tiledesk (mongoose) document as it appears on the wire, with snake_case
// member names. Reading is tolerant, as receivers must be (§9):
//   - every struct keeps its whole object as compact JSON text in `json`, so unknown fields (the
//     server adds fields over time) and fields not modelled here stay reachable;
//   - free-form objects (attributes, settings, metadata, widget, reply, snapshot, context, ...)
//     are kept as raw JSON text: empty when the field is absent, "null" when it was null;
//   - optional fields are std::optional, empty when absent or null; lists are empty when absent;
//     a few fields Tiledesk always fills from a schema default take that default when absent
//     (said on the member);
//   - virtuals (`id`, `requester_id`, `hasBot`, `isAuthenticated`, ...) are optional everywhere;
//   - a reference to another document may be the populated object or a bare id string, so it is a
//     Ref<T>: use ref_id() for the id either way, ref_object() for the object when populated.
// A payload that does not fit its model (not an object, a required field missing, a field of the
// wrong type, invalid JSON, nesting deeper than 1024 levels) is Error{payload_mismatch} whose
// detail names the field, e.g. "request.lead.email: expected a string, got number". Parsing never
// throws. Dates stay ISO-8601 strings as Tiledesk sends them.
//
// Event::request(), Event::lead(), ... (event.hpp) read an Event's payload; parse_request(),
// parse_lead(), ... read payload JSON held without an Event.
//
// Some payloads carry credentials that are deliberately not modelled, only present in `json`:
// faq_kb `secret` (faqbot.create) and user `password` (a bcrypt hash, user.signup and event.emit
// under Basic auth). Never log those `json` texts whole.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "tdhook/event.hpp"
#include "tdhook/result.hpp"

namespace tdhook {

// A reference to a T: the bare id string, or the populated object.
template <class T>
using Ref = std::variant<std::string, T>;

// The referenced document's id, populated or not.
template <class T>
const std::string& ref_id(const Ref<T>& ref) noexcept {
  if (const auto* id = std::get_if<std::string>(&ref)) return *id;
  return std::get<T>(ref).id;
}
// The id of an optional reference; empty when the reference is absent.
template <class T>
std::string ref_id(const std::optional<Ref<T>>& ref) {
  return ref ? ref_id(*ref) : std::string();
}
// The populated object, or nullptr when the reference is a bare id (or absent).
template <class T>
const T* ref_object(const Ref<T>& ref) noexcept {
  return std::get_if<T>(&ref);
}
template <class T>
const T* ref_object(const std::optional<Ref<T>>& ref) noexcept {
  return ref ? std::get_if<T>(&*ref) : nullptr;
}

// §6.11. A populated user; inside project_user.* events often only {_id, firstname, lastname}.
struct User {
  std::string id;  // _id (required)
  std::optional<std::string> email;
  std::optional<std::string> firstname;
  std::optional<std::string> lastname;
  std::optional<bool> emailverified;
  std::optional<std::int64_t> status;  // 100 = active
  std::string attributes;              // raw JSON
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;  // __v
  std::string json;
};

// §6.3. The contact behind a conversation.
struct Lead {
  std::string id;                      // _id (required)
  std::optional<std::string> lead_id;  // the requester's uid: guest uuid or user id
  std::optional<std::string> fullname;
  std::optional<std::string> email;
  std::optional<std::string> phone;
  std::optional<std::string> company;
  std::optional<std::string> note;
  std::optional<std::string> street_address;  // streetAddress
  std::optional<std::string> city;
  std::optional<std::string> region;
  std::optional<std::string> zipcode;
  std::optional<std::string> country;
  std::vector<std::string> tags;
  std::string attributes;              // raw JSON
  std::string properties;              // raw JSON
  std::optional<std::int64_t> status;  // 50 temp, 100 normal, 1000 deleted
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;  // may be "system"
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.5. A chatbot. Its `secret` (faqbot.create only) is left in `json` on purpose.
struct FaqKb {
  std::string id;    // _id (required)
  std::string name;  // required
  std::optional<std::string> description;
  std::optional<std::string> url;
  std::optional<std::string> webhook_url;
  bool webhook_enabled = false;     // schema default when absent
  std::optional<std::string> type;  // internal, tilebot, external, dialogflow, rasa, ...
  std::optional<std::string> subtype;
  std::optional<std::string> language;
  std::optional<bool> is_public;  // public
  std::optional<bool> certified;
  std::optional<std::string> intents_engine;  // intentsEngine
  std::vector<std::string> tags;
  std::optional<double> score;
  std::optional<bool> trained;
  std::optional<std::string> slug;
  std::optional<bool> trashed;
  std::optional<std::string> trashed_at;
  std::string attributes;  // raw JSON
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.4. A chatbot intent.
struct Faq {
  std::string id;         // _id (required)
  std::string id_faq_kb;  // the bot (required)
  std::optional<std::string> intent_id;
  std::optional<std::string> intent_display_name;
  std::optional<std::string> question;  // newline-separated alternative phrasings
  std::optional<std::string> answer;
  std::string reply;             // raw JSON
  std::string form;              // raw JSON
  std::string actions;           // raw JSON array of Tilebot actions
  bool webhook_enabled = false;  // schema default when absent
  bool enabled = true;           // schema default when absent
  std::optional<bool> agents_available;
  std::optional<std::string> topic;
  std::optional<std::string> status;  // "live", ...
  std::optional<std::string> language;
  std::string attributes;  // raw JSON
  std::optional<bool> trashed;
  std::optional<std::string> trashed_at;
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

struct Presence {
  std::optional<std::string> status;  // "online" | "offline"
  std::optional<std::string> changed_at;
};

// §6.6. A team member or an end user's membership of a project.
struct ProjectUser {
  std::string id;  // _id (required)
  std::optional<std::string> id_project;
  std::optional<Ref<User>> id_user;  // absent for guests, who have uuid_user
  std::optional<std::string> uuid_user;
  std::optional<std::string> role;        // owner, admin, supervisor, agent, user, guest, ...
  std::optional<std::int64_t> role_type;  // roleType: 1 agent, 2 end user
  std::optional<bool> user_available;
  std::optional<std::string> profile_status;  // profileStatus
  std::optional<Presence> presence;
  std::string attributes;                         // raw JSON
  std::string settings;                           // raw JSON
  std::optional<std::int64_t> max_assigned_chat;  // -1 = no limit
  std::optional<std::int64_t> number_assigned_requests;
  std::optional<std::string> last_ip;
  std::optional<std::string> last_login_at;
  std::string tags;  // raw JSON array
  std::vector<std::string> permissions;
  std::optional<std::string> status;  // "active" | "disabled"
  std::optional<bool> trashed;
  std::optional<bool> is_authenticated;  // isAuthenticated (virtual)
  std::optional<bool> is_busy;           // isBusy (project_user.* events)
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.8.
struct Group {
  std::string id;                    // _id (required)
  std::string name;                  // required
  std::vector<std::string> members;  // user ids
  std::optional<bool> enabled;
  std::optional<bool> trashed;
  std::string attributes;  // raw JSON
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.7.
struct Department {
  std::string id;    // _id (required)
  std::string name;  // required
  std::optional<std::string> description;
  std::optional<std::string> routing;  // "pooled" | "assigned"
  std::optional<std::string> id_bot;
  std::optional<bool> bot_only;
  std::optional<std::string> id_group;
  std::string groups;  // raw JSON array of {_id, group_id, percentage}
  std::optional<std::string> online_msg;
  std::optional<std::string> offline_msg;
  std::optional<bool> is_default;      // default
  std::string tags;                    // raw JSON array
  std::optional<std::int64_t> status;  // 1 enabled, 0 hidden in widget, -1 hidden in dashboard
  std::optional<bool> has_bot;         // hasBot (virtual)
  std::optional<FaqKb> bot;            // populated in message.create's request.department
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.10.
struct Project {
  std::string id;                         // _id (required)
  std::string name;                       // required
  std::optional<std::string> id_project;  // project.* events (= _id)
  std::optional<std::int64_t> status;     // 100 = active
  std::optional<bool> active_operating_hours;
  std::string operating_hours;  // raw JSON (an object, or a string holding JSON)
  std::string time_slots;       // raw JSON
  std::string settings;         // raw JSON
  std::string widget;           // raw JSON
  std::string attributes;       // raw JSON
  std::string profile;          // raw JSON: {name, trialDays, agents, type, ...}
  std::optional<std::int64_t> versions;
  std::vector<std::string> channels;  // channel names
  std::optional<std::string> organization;
  std::optional<bool> ip_filter_enabled;
  std::vector<std::string> ip_filter;
  std::optional<bool> ip_filter_deny_enabled;
  std::vector<std::string> ip_filter_deny;
  std::string banned_users;                     // raw JSON array
  std::optional<bool> trial_expired;            // virtual
  std::optional<std::int64_t> trial_days_left;  // virtual
  // Virtual. Tiledesk sends "" for a payment plan without subEnd; Tiledesk's own check
  // (`== true`) treats that as not active, and so does this member (false).
  std::optional<bool> is_active_subscription;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

enum class RequestStatus {
  temp = 50,
  unassigned = 100,
  abandoned = 150,
  assigned = 200,
  served = 300,  // legacy
  closed = 1000,
  unknown,  // any other value: see Request::status_code
};

// §6.1. A conversation.
struct Request {
  std::string id;          // _id (required)
  std::string request_id;  // the conversation key (required); messages' `recipient`
  RequestStatus status = RequestStatus::unknown;  // from `status` (required)
  std::int64_t status_code = 0;                   // `status` as sent
  std::string first_text;                         // required
  std::optional<std::int64_t> ticket_id;
  std::optional<bool> preflight;
  std::optional<bool> has_bot;  // hasBot
  std::optional<bool> smart_assignment;
  std::optional<bool> draft;
  std::optional<std::string> subject;
  std::optional<Ref<ProjectUser>> requester;
  std::optional<Ref<Lead>> lead;
  std::optional<std::string> requester_id;  // virtual; the *lead's* _id despite its name
  std::optional<Ref<Department>> department;
  std::vector<std::string> participants;         // user ids and/or "bot_<faq_kb id>"
  std::vector<std::string> participants_agents;  // participantsAgents
  std::vector<std::string> participants_bots;    // participantsBots
  std::vector<User> participating_agents;        // participatingAgents (populated virtual)
  std::vector<FaqKb> participating_bots;         // participatingBots (populated virtual)
  std::optional<std::string> assignee;
  std::vector<std::string> followers;  // project_user ids
  std::optional<std::string> priority;
  std::optional<std::string> working_status;  // workingStatus: new | pending | open
  std::optional<std::string> assigned_at;
  std::optional<std::string> first_response_at;
  std::optional<std::int64_t> waiting_time;  // ms
  std::optional<std::string> closed_at;
  std::optional<std::string> closed_by;
  std::optional<std::int64_t> duration;  // ms, creation to close
  std::optional<std::string> transcript;
  std::string tags;   // raw JSON array of {_id, tag, color?, attributes?}
  std::string notes;  // raw JSON array
  std::optional<std::int64_t> rating;
  std::optional<std::string> rating_message;
  std::string snapshot;                    // raw JSON
  std::optional<std::string> source_page;  // sourcePage
  std::optional<std::string> language;
  std::optional<std::string> user_agent;        // userAgent
  std::optional<std::string> channel;           // channel.name, e.g. "chat21"
  std::optional<std::string> channel_outbound;  // channelOutbound.name
  std::string attributes;                       // raw JSON
  std::string location;                         // raw JSON
  std::string contact;                          // raw JSON
  std::optional<std::int64_t> auto_close;
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// §6.2. A chat message.
struct Message {
  std::string id;         // _id (required)
  std::string sender;     // required: user id, guest uuid, "bot_<id>" or "system"
  std::string recipient;  // required: the request_id (group) or a user id (direct)
  std::optional<std::string> sender_fullname;  // senderFullname
  std::optional<std::string> recipient_fullname;
  std::string type = "text";           // text, image, frame, file, ...; schema default when absent
  std::string channel_type = "group";  // group | direct; schema default when absent
  std::optional<std::string> text;
  std::optional<std::string> language;
  std::optional<std::string> channel;  // channel.name
  // -100 failed, 0 sending, 100 sent, 150 delivered, 200 received, 250 return receipt, 300 seen;
  // schema default (200) when absent.
  std::int64_t status = 200;
  std::string attributes;  // raw JSON; {"subtype":"info",...} on system messages
  std::string metadata;    // raw JSON; attachments {src, width, height, name, type, uid}
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  // The conversation, in message.create* (lean: no virtuals). Absent when the message has no
  // request, and in request.close's messages.
  std::optional<Request> request;
  std::string json;
};

// §6.9. event.emit and event.emit.<name>.
struct CustomEvent {
  std::string id;          // _id (required)
  std::string name;        // required, e.g. "typing.start"
  std::string attributes;  // raw JSON (any type)
  std::optional<ProjectUser> project_user;
  std::optional<std::string> status;  // "stardard" (sic) by default
  // Raw JSON of the authenticated caller, empty for internal events. Under Basic auth it holds
  // the user's password hash: never log it.
  std::string user;
  std::optional<std::string> id_project;
  std::optional<std::string> created_by;
  std::optional<std::string> created_at;
  std::optional<std::string> updated_at;
  std::optional<std::int64_t> version;
  std::string json;
};

// One element of operator.select's `operators`: usually {"id_user": "<user id>"}, but
// round-robin may put a whole project_user object there.
struct Operator {
  std::optional<std::string> id_user;  // the id_user string, or a populated id_user's _id
  std::string json;
};

// §4.3. operator.select's routing result. A receiver answers by echoing the payload with only
// `operators` changed.
struct OperatorSelect {
  std::vector<ProjectUser> available_agents;
  std::vector<ProjectUser> agents;  // required (Tiledesk dereferences it)
  std::vector<Operator> operators;  // required; [] = unassigned (pooled)
  Department department;            // required (Tiledesk dereferences it)
  std::vector<Group> group;         // only when the department has id_group
  std::optional<std::string> id_project;
  std::optional<Project> project;
  std::string context;  // raw JSON; may hold a whole HTTP request with its Authorization header
  std::optional<std::string> last_operator_id;      // lastOperatorId (round-robin)
  std::optional<std::int64_t> last_operator_index;  // lastOperatorIndex
  std::string json;
};

// request.close: the closed request and every message of the conversation, oldest first.
struct RequestClose : Request {
  std::vector<Message> messages;  // required
};

Result<Request> parse_request(std::string_view json);
Result<Message> parse_message(std::string_view json);
Result<Lead> parse_lead(std::string_view json);
Result<Faq> parse_faq(std::string_view json);
Result<FaqKb> parse_faq_kb(std::string_view json);
Result<ProjectUser> parse_project_user(std::string_view json);
Result<Department> parse_department(std::string_view json);
Result<Group> parse_group(std::string_view json);
Result<Project> parse_project(std::string_view json);
Result<User> parse_user(std::string_view json);
Result<CustomEvent> parse_custom_event(std::string_view json);
Result<OperatorSelect> parse_operator_select(std::string_view json);
Result<RequestClose> parse_request_close(std::string_view json);

}  // namespace tdhook
