// Readers of the conversation models (request, message, request.close), of custom events and of
// the operator.select routing result.
#include "json_read.hpp"

namespace tdhook::detail {

namespace dom = simdjson::dom;

namespace {

RequestStatus request_status(std::int64_t code) noexcept {
  switch (code) {
    case 50:
      return RequestStatus::temp;
    case 100:
      return RequestStatus::unassigned;
    case 150:
      return RequestStatus::abandoned;
    case 200:
      return RequestStatus::assigned;
    case 300:
      return RequestStatus::served;
    case 1000:
      return RequestStatus::closed;
    default:
      return RequestStatus::unknown;
  }
}

void read_references(FieldReader& r, Request& out) {
  r.ref("requester", out.requester);
  r.ref("lead", out.lead);
  r.optional("requester_id", out.requester_id);
  r.ref("department", out.department);
  r.strings("participants", out.participants);
  r.strings("participantsAgents", out.participants_agents);
  r.strings("participantsBots", out.participants_bots);
  r.models("participatingAgents", out.participating_agents);
  r.models("participatingBots", out.participating_bots);
  r.optional("assignee", out.assignee);
  r.strings("followers", out.followers);
}

void read_lifecycle(FieldReader& r, Request& out) {
  r.optional("priority", out.priority);
  r.optional("workingStatus", out.working_status);
  r.optional("assigned_at", out.assigned_at);
  r.optional("first_response_at", out.first_response_at);
  r.optional("waiting_time", out.waiting_time);
  r.optional("closed_at", out.closed_at);
  r.optional("closed_by", out.closed_by);
  r.optional("duration", out.duration);
  r.optional("transcript", out.transcript);
  r.optional("rating", out.rating);
  r.optional("rating_message", out.rating_message);
  r.optional("auto_close", out.auto_close);
}

}  // namespace

std::optional<Error> read_model(dom::element element, const std::string& path, Request& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("request_id", out.request_id);
  r.required("status", out.status_code);
  out.status = request_status(out.status_code);
  r.required("first_text", out.first_text);
  r.optional("ticket_id", out.ticket_id);
  r.optional("preflight", out.preflight);
  r.optional("hasBot", out.has_bot);
  r.optional("smartAssignment", out.smart_assignment);
  r.optional("draft", out.draft);
  r.optional("subject", out.subject);
  read_references(r, out);
  read_lifecycle(r, out);
  r.raw("tags", out.tags);
  r.raw("notes", out.notes);
  r.raw("snapshot", out.snapshot);
  r.optional("sourcePage", out.source_page);
  r.optional("language", out.language);
  r.optional("userAgent", out.user_agent);
  r.name_of("channel", out.channel);
  r.name_of("channelOutbound", out.channel_outbound);
  r.raw("attributes", out.attributes);
  r.raw("location", out.location);
  r.raw("contact", out.contact);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Message& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("sender", out.sender);
  r.required("recipient", out.recipient);
  r.optional("senderFullname", out.sender_fullname);
  r.optional("recipientFullname", out.recipient_fullname);
  r.defaulted("type", out.type);
  r.defaulted("channel_type", out.channel_type);
  r.optional("text", out.text);
  r.optional("language", out.language);
  r.name_of("channel", out.channel);
  r.defaulted("status", out.status);
  r.raw("attributes", out.attributes);
  r.raw("metadata", out.metadata);
  r.optional_model("request", out.request);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, RequestClose& out) {
  if (auto err = read_model(element, path, static_cast<Request&>(out))) return err;
  FieldReader r(element, path);
  r.models("messages", out.messages, true);
  return r.error();
}

std::optional<Error> read_model(dom::element element, const std::string& path, CustomEvent& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("name", out.name);
  r.raw("attributes", out.attributes);
  r.optional_model("project_user", out.project_user);
  r.optional("status", out.status);
  r.raw("user", out.user);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Operator& out) {
  dom::object object;
  if (element.get_object().get(object) != simdjson::SUCCESS) return not_an_object(path, element);
  out.json = simdjson::to_string(element);
  dom::element id_user;
  if (object.at_key("id_user").get(id_user) != simdjson::SUCCESS || id_user.is_null()) {
    return std::nullopt;
  }
  // A whole project_user put here by round-robin may carry a populated id_user.
  std::string_view id;
  if (id_user.get_string().get(id) == simdjson::SUCCESS ||
      id_user.at_key("_id").get_string().get(id) == simdjson::SUCCESS) {
    out.id_user.emplace(id);
    return std::nullopt;
  }
  return Error{ErrorCode::payload_mismatch,
               path + ".id_user: expected an id string or a user object with a string _id, got " +
                   std::string(json_type_name(id_user.type()))};
}

std::optional<Error> read_model(dom::element element, const std::string& path,
                                OperatorSelect& out) {
  FieldReader r(element, path);
  r.models("operators", out.operators, true);
  r.models("agents", out.agents, true);
  r.required_model("department", out.department);
  r.models("available_agents", out.available_agents);
  r.models("group", out.group);
  r.optional("id_project", out.id_project);
  r.optional_model("project", out.project);
  r.raw("context", out.context);
  r.optional("lastOperatorId", out.last_operator_id);
  r.optional("lastOperatorIndex", out.last_operator_index);
  return finish(r, element, out);
}

}  // namespace tdhook::detail
