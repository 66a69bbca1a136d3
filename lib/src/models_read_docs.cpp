// Readers of the models that are plain Tiledesk documents: user, lead, faq_kb, faq, project_user,
// group, department, project.
#include "json_read.hpp"

namespace tdhook::detail {

namespace dom = simdjson::dom;

std::optional<Error> read_model(dom::element element, const std::string& path, User& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.optional("email", out.email);
  r.optional("firstname", out.firstname);
  r.optional("lastname", out.lastname);
  r.optional("emailverified", out.emailverified);
  r.optional("status", out.status);
  r.raw("attributes", out.attributes);
  r.optional("createdAt", out.created_at);
  r.optional("updatedAt", out.updated_at);
  r.optional("__v", out.version);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Lead& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.optional("lead_id", out.lead_id);
  r.optional("fullname", out.fullname);
  r.optional("email", out.email);
  r.optional("phone", out.phone);
  r.optional("company", out.company);
  r.optional("note", out.note);
  r.optional("streetAddress", out.street_address);
  r.optional("city", out.city);
  r.optional("region", out.region);
  r.optional("zipcode", out.zipcode);
  r.optional("country", out.country);
  r.strings("tags", out.tags);
  r.raw("attributes", out.attributes);
  r.raw("properties", out.properties);
  r.optional("status", out.status);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, FaqKb& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("name", out.name);
  r.optional("description", out.description);
  r.optional("url", out.url);
  r.optional("webhook_url", out.webhook_url);
  r.defaulted("webhook_enabled", out.webhook_enabled);
  r.optional("type", out.type);
  r.optional("subtype", out.subtype);
  r.optional("language", out.language);
  r.optional("public", out.is_public);
  r.optional("certified", out.certified);
  r.optional("intentsEngine", out.intents_engine);
  r.strings("tags", out.tags);
  r.optional("score", out.score);
  r.optional("trained", out.trained);
  r.optional("slug", out.slug);
  r.optional("trashed", out.trashed);
  r.optional("trashedAt", out.trashed_at);
  r.raw("attributes", out.attributes);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Faq& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("id_faq_kb", out.id_faq_kb);
  r.optional("intent_id", out.intent_id);
  r.optional("intent_display_name", out.intent_display_name);
  r.optional("question", out.question);
  r.optional("answer", out.answer);
  r.raw("reply", out.reply);
  r.raw("form", out.form);
  r.raw("actions", out.actions);
  r.defaulted("webhook_enabled", out.webhook_enabled);
  r.defaulted("enabled", out.enabled);
  r.optional("agents_available", out.agents_available);
  r.optional("topic", out.topic);
  r.optional("status", out.status);
  r.optional("language", out.language);
  r.raw("attributes", out.attributes);
  r.optional("trashed", out.trashed);
  r.optional("trashedAt", out.trashed_at);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Presence& out) {
  FieldReader r(element, path);
  r.optional("status", out.status);
  r.optional("changedAt", out.changed_at);
  return r.error();
}

std::optional<Error> read_model(dom::element element, const std::string& path, ProjectUser& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.ref("id_user", out.id_user);
  r.optional("uuid_user", out.uuid_user);
  r.optional("role", out.role);
  r.optional("roleType", out.role_type);
  r.optional("user_available", out.user_available);
  r.optional("profileStatus", out.profile_status);
  r.optional_model("presence", out.presence);
  r.raw("attributes", out.attributes);
  r.raw("settings", out.settings);
  r.optional("max_assigned_chat", out.max_assigned_chat);
  r.optional("number_assigned_requests", out.number_assigned_requests);
  r.optional("last_ip", out.last_ip);
  r.optional("last_login_at", out.last_login_at);
  r.raw("tags", out.tags);
  r.strings("permissions", out.permissions);
  r.optional("status", out.status);
  r.optional("trashed", out.trashed);
  r.optional("isAuthenticated", out.is_authenticated);
  r.optional("isBusy", out.is_busy);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Group& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("name", out.name);
  r.strings("members", out.members);
  r.optional("enabled", out.enabled);
  r.optional("trashed", out.trashed);
  r.raw("attributes", out.attributes);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Department& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("name", out.name);
  r.optional("description", out.description);
  r.optional("routing", out.routing);
  r.optional("id_bot", out.id_bot);
  r.optional("bot_only", out.bot_only);
  r.optional("id_group", out.id_group);
  r.raw("groups", out.groups);
  r.optional("online_msg", out.online_msg);
  r.optional("offline_msg", out.offline_msg);
  r.optional("default", out.is_default);
  r.raw("tags", out.tags);
  r.optional("status", out.status);
  r.optional("hasBot", out.has_bot);
  r.optional_model("bot", out.bot);
  read_document_fields(r, out);
  return finish(r, element, out);
}

std::optional<Error> read_model(dom::element element, const std::string& path, Project& out) {
  FieldReader r(element, path);
  r.required("_id", out.id);
  r.required("name", out.name);
  r.optional("status", out.status);
  r.optional("activeOperatingHours", out.active_operating_hours);
  r.raw("operatingHours", out.operating_hours);
  r.raw("timeSlots", out.time_slots);
  r.raw("settings", out.settings);
  r.raw("widget", out.widget);
  r.raw("attributes", out.attributes);
  r.raw("profile", out.profile);
  r.optional("versions", out.versions);
  r.names("channels", out.channels);
  r.optional("organization", out.organization);
  r.optional("ipFilterEnabled", out.ip_filter_enabled);
  r.strings("ipFilter", out.ip_filter);
  r.optional("ipFilterDenyEnabled", out.ip_filter_deny_enabled);
  r.strings("ipFilterDeny", out.ip_filter_deny);
  r.raw("bannedUsers", out.banned_users);
  r.optional("trialExpired", out.trial_expired);
  r.optional("trialDaysLeft", out.trial_days_left);
  r.loose_bool("isActiveSubscription", out.is_active_subscription);
  read_document_fields(r, out);
  return finish(r, element, out);
}

}  // namespace tdhook::detail
