// parse_<model>() and Event's typed payload access.
#include "tdhook/models.hpp"

#include "json_read.hpp"

namespace tdhook {

namespace {

// One parser per thread: it keeps its buffers between calls, and models copy what they keep, so
// nothing refers to the parser once a parse_*() returns. Its depth limit (1024) turns absurdly
// nested payloads into a clean error.
simdjson::dom::parser& thread_parser() {
  thread_local simdjson::dom::parser parser;
  return parser;
}

template <class T>
Result<T> parse_model(std::string_view json, const char* root) {
  simdjson::dom::element element;
  auto err = thread_parser().parse(json.data(), json.size()).get(element);
  if (err != simdjson::SUCCESS) {
    return Error{ErrorCode::payload_mismatch,
                 std::string(root) + ": not valid JSON: " + simdjson::error_message(err)};
  }
  T out;
  if (auto error = detail::read_model(element, root, out)) return std::move(*error);
  return out;
}

}  // namespace

Result<Request> parse_request(std::string_view json) {
  return parse_model<Request>(json, "request");
}
Result<Message> parse_message(std::string_view json) {
  return parse_model<Message>(json, "message");
}
Result<Lead> parse_lead(std::string_view json) { return parse_model<Lead>(json, "lead"); }
Result<Faq> parse_faq(std::string_view json) { return parse_model<Faq>(json, "faq"); }
Result<FaqKb> parse_faq_kb(std::string_view json) { return parse_model<FaqKb>(json, "faq_kb"); }
Result<ProjectUser> parse_project_user(std::string_view json) {
  return parse_model<ProjectUser>(json, "project_user");
}
Result<Department> parse_department(std::string_view json) {
  return parse_model<Department>(json, "department");
}
Result<Group> parse_group(std::string_view json) { return parse_model<Group>(json, "group"); }
Result<Project> parse_project(std::string_view json) {
  return parse_model<Project>(json, "project");
}
Result<User> parse_user(std::string_view json) { return parse_model<User>(json, "user"); }
Result<CustomEvent> parse_custom_event(std::string_view json) {
  return parse_model<CustomEvent>(json, "event");
}
Result<OperatorSelect> parse_operator_select(std::string_view json) {
  return parse_model<OperatorSelect>(json, "operator_select");
}
Result<RequestClose> parse_request_close(std::string_view json) {
  return parse_model<RequestClose>(json, "request");
}

Result<Request> Event::request() const { return parse_request(payload_json()); }
Result<Message> Event::message() const { return parse_message(payload_json()); }
Result<Lead> Event::lead() const { return parse_lead(payload_json()); }
Result<Faq> Event::faq() const { return parse_faq(payload_json()); }
Result<FaqKb> Event::faq_kb() const { return parse_faq_kb(payload_json()); }
Result<ProjectUser> Event::project_user() const { return parse_project_user(payload_json()); }
Result<Department> Event::department() const { return parse_department(payload_json()); }
Result<Group> Event::group() const { return parse_group(payload_json()); }
Result<Project> Event::project() const { return parse_project(payload_json()); }
Result<User> Event::user() const { return parse_user(payload_json()); }
Result<CustomEvent> Event::custom_event() const { return parse_custom_event(payload_json()); }
Result<OperatorSelect> Event::operator_select() const {
  return parse_operator_select(payload_json());
}
Result<RequestClose> Event::request_close() const { return parse_request_close(payload_json()); }

}  // namespace tdhook
