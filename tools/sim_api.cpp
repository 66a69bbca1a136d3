#include "sim_api.hpp"

#include <httplib.h>
#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <fstream>
#include <sstream>

#include "base/base64.hpp"

namespace tdhook::tools::sim {

namespace {

const std::string api_prefix = R"(/(?:(?:v1|v2|v3|api)/)?([^/]+)/subscriptions)";
constexpr const char* json_type = "application/json; charset=utf-8";

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t\r\n") - b + 1);
}

void reply(httplib::Response& res, int status, const Json& body) {
  res.status = status;
  res.set_content(dump(body), json_type);
}

void reply_msg(httplib::Response& res, int status, const std::string& msg) {
  reply(res, status, Json{{"success", false}, {"msg", msg}});
}

std::string percent_decode(const std::string& s) {
  std::string out;
  for (std::size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out.push_back(' ');
    } else if (s[i] == '%' && i + 2 < s.size() &&
               std::isxdigit(static_cast<unsigned char>(s[i + 1])) &&
               std::isxdigit(static_cast<unsigned char>(s[i + 2]))) {
      out.push_back(static_cast<char>(std::stoi(s.substr(i + 1, 2), nullptr, 16)));
      i += 2;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// The request body as Express's body parsers leave it: JSON, or a urlencoded form; anything
// else is an empty object (so that the required fields are missing, as in Tiledesk).
std::optional<Json> parse_body(const httplib::Request& req) {
  const std::string type = lower(req.get_header_value("Content-Type"));
  if (type.rfind("application/json", 0) == 0) {
    if (trim(req.body).empty()) return Json::object();
    Json j = Json::parse(req.body, nullptr, false);
    if (j.is_discarded()) return std::nullopt;
    return j;
  }
  Json j = Json::object();
  if (type.rfind("application/x-www-form-urlencoded", 0) == 0) {
    std::istringstream in(req.body);
    std::string pair;
    while (std::getline(in, pair, '&')) {
      const auto eq = pair.find('=');
      if (eq == std::string::npos) continue;
      j[percent_decode(pair.substr(0, eq))] = percent_decode(pair.substr(eq + 1));
    }
  }
  return j;
}

// Mongoose's String cast: strings, numbers and booleans become text; anything else fails.
std::optional<std::string> cast_string(const Json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number() || v.is_boolean()) return dump(v);
  return std::nullopt;
}

// Mongoose's Boolean cast.
std::optional<bool> cast_bool(const Json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) {
    if (v == 1) return true;
    if (v == 0) return false;
  }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "true" || s == "1" || s == "yes") return true;
    if (s == "false" || s == "0" || s == "no") return false;
  }
  return std::nullopt;
}

bool valid_sample_name(const std::string& name) {
  if (name.empty() || name.front() == '.') return false;
  return std::all_of(name.begin(), name.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '.' || c == '_' || c == '-';
  });
}

}  // namespace

Result<std::pair<std::string, std::string>> parse_user(const std::string& text) {
  const auto colon = text.find(':');
  if (colon == std::string::npos || colon == 0) {
    return Error{ErrorCode::invalid_config, "a user must be given as NAME:PASSWORD"};
  }
  return std::make_pair(lower(text.substr(0, colon)), text.substr(colon + 1));
}

Result<std::vector<std::pair<std::string, std::string>>> read_users_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Error{ErrorCode::invalid_config, "cannot read the users file " + path};
  std::vector<std::pair<std::string, std::string>> users;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    line = trim(line);
    if (line.empty() || line.front() == '#') continue;
    auto user = parse_user(line);
    if (!user) {
      return Error{ErrorCode::invalid_config,
                   path + ":" + std::to_string(number) + ": expected NAME:PASSWORD"};
    }
    users.push_back(std::move(*user));
  }
  return users;
}

Result<std::string> load_sample(const std::string& samples_dir, const std::string& name,
                                const std::string& project_id, std::string& event) {
  if (!valid_sample_name(name)) {
    return Error{ErrorCode::invalid_input, "invalid sample name: use a name like lead.create"};
  }
  const std::string path = samples_dir + "/" + name + ".json";
  std::ifstream in(path);
  if (!in) return Error{ErrorCode::invalid_input, "no sample named " + name + " in " + samples_dir};
  std::stringstream text;
  text << in.rdbuf();
  Json doc = Json::parse(text.str(), nullptr, false);
  if (doc.is_discarded() || !doc.is_object() || !doc.contains("payload")) {
    return Error{ErrorCode::invalid_input, path + " is not a notification sample"};
  }
  Json payload = doc["payload"];
  // The sample's own project is rewritten so that it belongs to the project fired in.
  if (payload.is_object() && payload.contains("id_project")) payload["id_project"] = project_id;
  if (doc.contains("hook") && doc["hook"].is_object() && doc["hook"].contains("event") &&
      doc["hook"]["event"].is_string()) {
    event = doc["hook"]["event"].get<std::string>();
  }
  return dump(payload);
}

struct SimServer::Impl {
  Store& store;
  Firer& firer;
  ApiOptions options;
  const Log& log;
  std::string shared_secret;  // --compat: uuidv4() evaluated once per process (§5.9)
  httplib::Server server;

  Impl(Store& s, Firer& f, ApiOptions o, const Log& l)
      : store(s), firer(f), options(std::move(o)), log(l), shared_secret(new_uuid_v4()) {}

  // Tiledesk's middleware order (§5.1): project id, project existence, then authentication.
  // Returns the authenticated user's name, or nullopt after answering.
  std::optional<std::string> admit(const httplib::Request& req, httplib::Response& res,
                                   std::string& project) {
    project = req.matches[1].str();
    if (!is_object_id(project)) {
      reply(res, 400, Json{{"error", "Invalid project id: " + project}});
      return std::nullopt;
    }
    project = lower(project);
    const auto& ps = options.projects;
    if (!ps.empty() && std::find(ps.begin(), ps.end(), project) == ps.end()) {
      reply(res, 400, Json{{"error", "Project not found with id: " + project}});
      return std::nullopt;
    }
    if (auto user = authenticate(req.get_header_value("Authorization"))) return user;
    res.status = 401;
    res.set_header("WWW-Authenticate", "Basic realm=\"Users\"");
    res.set_content("Unauthorized", "text/plain");
    return std::nullopt;
  }

  std::optional<std::string> authenticate(const std::string& header) const {
    if (lower(header.substr(0, 6)) != "basic ") return std::nullopt;
    auto decoded = receiver::base64_decode(trim(header.substr(6)));
    if (!decoded) return std::nullopt;
    auto user = parse_user(*decoded);
    if (!user) return std::nullopt;
    if (options.users.empty()) return user->first;
    for (const auto& [name, password] : options.users) {
      if (name == user->first && password.size() == user->second.size() &&
          CRYPTO_memcmp(password.data(), user->second.data(), password.size()) == 0) {
        return name;
      }
    }
    return std::nullopt;
  }

  void create(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    auto user = admit(req, res, project);
    if (!user) return;
    auto body = parse_body(req);
    if (!body) return reply_msg(res, 400, "The body is not valid JSON.");
    std::optional<std::string> event, target;
    if (body->is_object() && body->contains("event")) event = cast_string((*body)["event"]);
    if (body->is_object() && body->contains("target")) target = cast_string((*body)["target"]);
    if (!event || event->empty() || !target || target->empty()) {
      return reply_msg(res, 500, "Error saving object.");  // mongoose's validation error
    }
    Subscription sub;
    sub.id = new_object_id();
    sub.secret = options.compat ? shared_secret : new_uuid_v4();
    sub.global = false;
    sub.target = target;
    sub.event = event;
    sub.id_project = project;
    sub.created_by = user_id_for(*user);
    sub.created_at = sub.updated_at = iso_time(now_ms());
    sub.version = 0;
    auto outcome = store.insert(sub);
    if (!outcome) return reply_msg(res, 500, "Error saving object.");
    if (*outcome == InsertOutcome::created) {
      log.info("subscription created", {{"id", sub.id},
                                        {"event", *event},
                                        {"project_id", project},
                                        {"target", loggable_url(*target)}});
      res.set_header("x-hook-secret", *sub.secret);
      return reply(res, 200, sub.created_json());
    }
    // Duplicate key: Tiledesk answers findOne({id_project, event}), whatever its target.
    auto found = options.compat ? store.find_first(project, *event)
                                : store.find_exact(project, *event, *target);
    if (!found || !*found) return reply_msg(res, 500, "Error saving object.");
    res.set_header("x-hook-secret", (*found)->secret.value_or(""));
    reply(res, 200, (*found)->with_secret_json());
  }

  void list(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    auto subs = store.list(project);
    if (!subs) return reply_msg(res, 500, "Error getting object.");
    Json out = Json::array();
    for (const auto& s : *subs) out.push_back(s.public_json());
    reply(res, 200, out);
  }

  void get(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    const std::string id = lower(req.matches[2].str());
    if (!is_object_id(id)) return reply_msg(res, 500, "Error getting object.");
    auto found = store.find(id);  // not scoped to the project, as in Tiledesk (§5.6)
    if (!found) return reply_msg(res, 500, "Error getting object.");
    if (!*found) return reply_msg(res, 404, "Object not found.");
    reply(res, 200, (*found)->public_json());
  }

  void update(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    const std::string id = lower(req.matches[2].str());
    if (!is_object_id(id)) return reply_msg(res, 500, "Error updating object.");
    auto body = parse_body(req);
    if (!body) return reply_msg(res, 400, "The body is not valid JSON.");
    if (!body->is_object()) return reply_msg(res, 500, "Error updating object.");
    SubscriptionUpdate u;
    bool cast_ok = true;
    auto text = [&](const char* key, std::optional<std::string>& out) {
      if (!body->contains(key)) return;
      out = cast_string((*body)[key]);
      cast_ok = cast_ok && out.has_value();
    };
    text("event", u.event);
    text("target", u.target);
    text("secret", u.secret);
    text("id_project", u.id_project);
    text("createdBy", u.created_by);
    if (body->contains("global")) {
      u.global = cast_bool((*body)["global"]);
      cast_ok = cast_ok && u.global.has_value();
    }
    if (!cast_ok) return reply_msg(res, 500, "Error updating object.");
    auto updated = store.upsert(id, u);  // not scoped to the project (§5.4)
    if (!updated) return reply_msg(res, 500, "Error updating object.");
    log.info(
        "subscription updated",
        {{"id", id}, {"secret_changed", u.secret.has_value()}, {"global", updated->is_global()}});
    reply(res, 200, updated->public_json());
  }

  void remove(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    const std::string id = lower(req.matches[2].str());
    if (!is_object_id(id)) return reply_msg(res, 500, "Error deleting object.");
    auto removed = store.remove(id);  // not scoped to the project (§5.5)
    if (!removed) return reply_msg(res, 500, "Error deleting object.");
    if (*removed) log.info("subscription deleted", {{"id", id}});
    reply(res, 200, *removed ? (*removed)->public_json() : Json(nullptr));
  }

  void history(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    std::int64_t page = 0;
    if (req.has_param("page")) {
      try {
        page = std::max<std::int64_t>(0, std::stoll(req.get_param_value("page")));
      } catch (const std::exception&) {
        page = 0;
      }
    }
    auto rows = store.history(project, page);
    if (!rows) return reply_msg(res, 500, "Error getting object.");
    Json out = Json::array();
    for (const auto& r : *rows) out.push_back(r.to_json());
    reply(res, 200, out);
  }

  void test(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    // Tiledesk's route JSON-serializes the circular Express request and ends in a 500 (§5.8).
    reply_msg(res, 500,
              "Error testing object. (Tiledesk's route is broken; use POST /_sim/" + project +
                  "/fire to fire an event)");
  }

  void fire(const httplib::Request& req, httplib::Response& res) {
    std::string project;
    if (!admit(req, res, project)) return;
    auto body = parse_body(req);
    if (!body || !body->is_object()) {
      return reply(res, 400, Json{{"error", "the body must be a JSON object"}});
    }
    std::string event;
    if (body->contains("event") && (*body)["event"].is_string()) event = (*body)["event"];
    std::string payload;
    if (body->contains("sample")) {
      if (!(*body)["sample"].is_string())
        return reply(res, 400, Json{{"error", "sample must be a string"}});
      std::string sample_event;
      auto loaded = load_sample(options.samples_dir, (*body)["sample"], project, sample_event);
      if (!loaded) return reply(res, 400, Json{{"error", loaded.error().detail}});
      payload = std::move(*loaded);
      if (event.empty()) event = sample_event;
    } else if (body->contains("payload")) {
      payload = dump((*body)["payload"]);
    } else {
      return reply(res, 400, Json{{"error", "give a payload or a sample"}});
    }
    if (event.empty()) return reply(res, 400, Json{{"error", "event must be a non-empty string"}});
    const bool async = body->contains("async") && (*body)["async"] == true;
    auto report = firer.fire(project, event, payload, !async);
    if (!report) return reply(res, 400, Json{{"error", report.error().detail}});
    reply(res, 200, to_json(*report));
  }

  void routes() {
    using H = void (Impl::*)(const httplib::Request&, httplib::Response&);
    auto bind = [this](H h) {
      return
          [this, h](const httplib::Request& req, httplib::Response& res) { (this->*h)(req, res); };
    };
    const std::string id = "/([^/]+)/?";
    server.Post(R"(/_sim/([^/]+)/fire/?)", bind(&Impl::fire));
    server.Get(api_prefix + "/history/?", bind(&Impl::history));
    server.Post(api_prefix + "/test/?", bind(&Impl::test));
    server.Post(api_prefix + "/?", bind(&Impl::create));
    server.Get(api_prefix + "/?", bind(&Impl::list));
    server.Get(api_prefix + id, bind(&Impl::get));
    server.Put(api_prefix + id, bind(&Impl::update));
    server.Delete(api_prefix + id, bind(&Impl::remove));
    server.set_logger([this](const httplib::Request& req, const httplib::Response& res) {
      log.info("request", {{"method", req.method}, {"path", req.path}, {"status", res.status}});
    });
    server.set_payload_max_length(16 * 1024 * 1024);
    // cpp-httplib writes an answer's head and body apart: without this a kept-alive client's
    // next call waits for its own delayed ACK (40 ms).
    server.set_tcp_nodelay(true);
  }
};

SimServer::SimServer(Store& store, Firer& firer, ApiOptions options, const Log& log)
    : impl_(std::make_unique<Impl>(store, firer, std::move(options), log)) {
  impl_->routes();
}

SimServer::~SimServer() = default;

Result<int> SimServer::bind(const std::string& host, int port) {
  if (port == 0) {
    const int bound = impl_->server.bind_to_any_port(host);
    if (bound <= 0) return Error{ErrorCode::invalid_config, "cannot listen on " + host + ":0"};
    return bound;
  }
  if (!impl_->server.bind_to_port(host, port)) {
    return Error{ErrorCode::invalid_config,
                 "cannot listen on " + host + ":" + std::to_string(port)};
  }
  return port;
}

void SimServer::run() { impl_->server.listen_after_bind(); }
void SimServer::stop() { impl_->server.stop(); }
bool SimServer::is_running() const { return impl_->server.is_running(); }

}  // namespace tdhook::tools::sim
