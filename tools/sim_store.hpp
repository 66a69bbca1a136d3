#pragma once
// The simulator's state (`tdhook sim`): subscriptions and the delivery history, in SQLite.
//
// Documents are printed the way mongoose 5 prints them (reference §5.2, §5.7): ObjectIds as
// 24 lowercase hex, dates as ISO-8601 UTC with milliseconds, members in Tiledesk's order. A
// subscription created through PUT's upsert path (reference §5.4) may lack any field but _id,
// so every field except the id is optional here.

#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tdhook/result.hpp"

struct sqlite3;

namespace tdhook::tools::sim {

using Json = nlohmann::ordered_json;

// A new ObjectId, time-based like Mongo's: 4 bytes of seconds, 5 random bytes per process,
// a 3-byte counter.
std::string new_object_id();
bool is_object_id(std::string_view text) noexcept;
// A UUID v4 from OpenSSL's RAND_bytes, as uuid/v4 prints it.
std::string new_uuid_v4();
// Milliseconds since the Unix epoch, and as 2024-02-05T14:21:07.512Z.
std::int64_t now_ms();
std::string iso_time(std::int64_t ms);
// A stable ObjectId-shaped id for a user name (Tiledesk stores the user's id in createdBy).
std::string user_id_for(std::string_view user_name);

struct Subscription {
  std::string id;
  std::optional<std::string> target, event, id_project, created_by, secret;
  std::optional<bool> global;
  std::optional<std::string> created_at, updated_at;
  std::optional<std::int64_t> version;  // __v

  // The document as a new mongoose document prints it: secret, global, then the rest (§5.2).
  Json created_json() const;
  // As a loaded document prints it, secret and global left out (list, get, PUT, DELETE) and as
  // Tiledesk puts it in `hook`: _id, target, event, id_project, createdBy, createdAt,
  // updatedAt, __v.
  Json public_json() const;
  // A loaded document with `+secret` (the duplicate-create answer of §5.2): _id, secret, ...
  Json with_secret_json() const;
  bool is_global() const noexcept { return global.value_or(false); }
};

// The fields a PUT may set (reference §5.4); unset ones are left alone.
struct SubscriptionUpdate {
  std::optional<std::string> target, event, id_project, created_by, secret;
  std::optional<bool> global;
};

// One row of GET …/history (reference §5.7). Optional members are omitted when absent.
struct HistoryEntry {
  std::string id;
  std::string event, target, id_project;
  std::optional<std::string> response, body;
  std::string json_request;
  std::optional<std::string> err;
  std::string created_at, updated_at;

  Json to_json() const;
};

enum class InsertOutcome { created, duplicate };

// Thread-safe: one connection behind a mutex (the simulator is not about database speed).
class Store {
 public:
  // `path` ":memory:" for a throwaway store; otherwise a file, created with its schema.
  static Result<std::unique_ptr<Store>> open(const std::string& path);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Inserts a new subscription; duplicate when (id_project, event, target) already exists,
  // like Mongo's unique index (code 11000).
  Result<InsertOutcome> insert(const Subscription& sub);
  Result<std::optional<Subscription>> find(const std::string& id);
  // findOne({id_project, event}): the oldest subscription of that project and event.
  Result<std::optional<Subscription>> find_first(const std::string& project,
                                                 const std::string& event);
  Result<std::optional<Subscription>> find_exact(const std::string& project,
                                                 const std::string& event,
                                                 const std::string& target);
  Result<std::vector<Subscription>> list(const std::string& project);
  // Subscriptions an event occurrence goes to: exact event name, and the project or global.
  Result<std::vector<Subscription>> matching(const std::string& event, const std::string& project);
  // findByIdAndUpdate(id, update, {new: true, upsert: true}); an unknown id creates a document
  // with only the given fields (no secret, no __v), as mongoose 5 does. invalid_input when the
  // change collides with another subscription's (id_project, event, target).
  Result<Subscription> upsert(const std::string& id, const SubscriptionUpdate& update);
  Result<std::optional<Subscription>> remove(const std::string& id);

  Status add_history(const HistoryEntry& entry);
  // Newest first, 40 a page, page 0-based.
  Result<std::vector<HistoryEntry>> history(const std::string& project, std::int64_t page);
  static constexpr std::int64_t history_page_size = 40;

 private:
  explicit Store(sqlite3* db) : db_(db) {}
  Result<std::vector<Subscription>> query_subscriptions(const std::string& where,
                                                        const std::vector<std::string>& args);
  sqlite3* db_;
  std::mutex mutex_;
};

}  // namespace tdhook::tools::sim
