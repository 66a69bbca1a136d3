#pragma once
// The simulator's HTTP side: Tiledesk's subscription REST API (reference §5) at
// /:project_id/subscriptions (also under /v1/, /v2/, /v3/ and /api/), and the simulator's own
// POST /_sim/:project_id/fire.

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "sim_fire.hpp"
#include "sim_store.hpp"
#include "tdhook/result.hpp"

namespace tdhook::tools::sim {

struct ApiOptions {
  // Basic-auth users (name, password); names compare case-insensitively, as Tiledesk lowercases
  // e-mails. Empty: any Basic credentials are accepted (a request without them still gets 401).
  std::vector<std::pair<std::string, std::string>> users;
  std::vector<std::string> projects;  // empty: every valid ObjectId is an existing project
  bool compat = false;                // one shared secret, duplicate create = first match
  std::string samples_dir;            // for {"sample": NAME}
};

// Reads NAME:PASSWORD lines (blank lines and # comments skipped).
Result<std::vector<std::pair<std::string, std::string>>> read_users_file(const std::string& path);
Result<std::pair<std::string, std::string>> parse_user(const std::string& text);

// The `payload` of samples_dir/NAME.json, with a top-level id_project set to `project_id`;
// `event` receives the sample's hook.event.
Result<std::string> load_sample(const std::string& samples_dir, const std::string& name,
                                const std::string& project_id, std::string& event);

class SimServer {
 public:
  SimServer(Store& store, Firer& firer, ApiOptions options, const Log& log);
  ~SimServer();
  SimServer(const SimServer&) = delete;
  SimServer& operator=(const SimServer&) = delete;

  // Binds HOST:PORT (port 0 = any free port) and returns the bound port.
  Result<int> bind(const std::string& host, int port);
  void run();   // serves until stop()
  void stop();  // thread-safe
  bool is_running() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace tdhook::tools::sim
