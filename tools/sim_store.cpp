#include "sim_store.hpp"

#include "store/record.hpp"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <ctime>
#include <variant>

namespace tdhook::tools::sim {

namespace {

constexpr char hex_digits[] = "0123456789abcdef";

std::string to_hex(const unsigned char* data, std::size_t size) {
  std::string out;
  out.reserve(size * 2);
  for (std::size_t i = 0; i < size; ++i) {
    out.push_back(hex_digits[data[i] >> 4]);
    out.push_back(hex_digits[data[i] & 0x0f]);
  }
  return out;
}

void random_bytes(unsigned char* out, int size) {
  if (RAND_bytes(out, size) != 1) std::abort();  // no secure randomness: nothing safe to do
}

struct ProcessRandom {
  std::array<unsigned char, 5> bytes{};
  std::atomic<std::uint32_t> counter{0};
  ProcessRandom() {
    random_bytes(bytes.data(), static_cast<int>(bytes.size()));
    unsigned char c[3];
    random_bytes(c, 3);
    counter = (std::uint32_t{c[0]} << 16) | (std::uint32_t{c[1]} << 8) | c[2];
  }
};

ProcessRandom& process_random() {
  static ProcessRandom instance;
  return instance;
}

// A prepared statement that finalizes itself.
class Stmt {
 public:
  Stmt(sqlite3* db, const std::string& sql) {
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt_, nullptr) != SQLITE_OK) stmt_ = nullptr;
  }
  ~Stmt() { sqlite3_finalize(stmt_); }
  Stmt(const Stmt&) = delete;
  Stmt& operator=(const Stmt&) = delete;
  bool ok() const { return stmt_ != nullptr; }
  sqlite3_stmt* get() const { return stmt_; }

  void bind(int i, const std::optional<std::string>& v) {
    if (v) {
      sqlite3_bind_text(stmt_, i, v->data(), static_cast<int>(v->size()), SQLITE_TRANSIENT);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
  }
  void bind(int i, const std::string& v) { bind(i, std::optional<std::string>(v)); }
  void bind(int i, const std::optional<std::int64_t>& v) {
    if (v) {
      sqlite3_bind_int64(stmt_, i, *v);
    } else {
      sqlite3_bind_null(stmt_, i);
    }
  }
  std::optional<std::string> text(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
    return std::string(p, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, col)));
  }
  std::optional<std::int64_t> integer(int col) const {
    if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
    return sqlite3_column_int64(stmt_, col);
  }

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

Error db_error(sqlite3* db, std::string_view what) {
  return Error{ErrorCode::invalid_input, std::string(what) + ": " + sqlite3_errmsg(db)};
}

constexpr const char* schema_sql = R"sql(
CREATE TABLE IF NOT EXISTS subscriptions(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT UNIQUE NOT NULL, event TEXT, target TEXT,
  id_project TEXT, created_by TEXT, secret TEXT, global INTEGER, created_at TEXT,
  updated_at TEXT, v INTEGER);
CREATE UNIQUE INDEX IF NOT EXISTS subscriptions_unique ON subscriptions(id_project, event, target);
CREATE INDEX IF NOT EXISTS subscriptions_event ON subscriptions(event, id_project, global);
CREATE TABLE IF NOT EXISTS history(
  seq INTEGER PRIMARY KEY AUTOINCREMENT, id TEXT NOT NULL, id_project TEXT, event TEXT,
  target TEXT, response TEXT, body TEXT, json_request TEXT, err TEXT, created_at TEXT,
  updated_at TEXT);
CREATE INDEX IF NOT EXISTS history_project ON history(id_project, created_at, seq);
)sql";

constexpr const char* subscription_columns =
    "id, event, target, id_project, created_by, secret, global, created_at, updated_at, v";

Subscription read_subscription(const Stmt& s) {
  Subscription sub;
  sub.id = s.text(0).value_or("");
  sub.event = s.text(1);
  sub.target = s.text(2);
  sub.id_project = s.text(3);
  sub.created_by = s.text(4);
  sub.secret = s.text(5);
  if (auto g = s.integer(6)) sub.global = *g != 0;
  sub.created_at = s.text(7);
  sub.updated_at = s.text(8);
  sub.version = s.integer(9);
  return sub;
}

void put_optional(Json& j, const char* key, const std::optional<std::string>& v) {
  if (v) j[key] = *v;
}

// The members every printed subscription shares, after _id (and secret).
void put_common(Json& j, const Subscription& s) {
  put_optional(j, "target", s.target);
  put_optional(j, "event", s.event);
  put_optional(j, "id_project", s.id_project);
  put_optional(j, "createdBy", s.created_by);
  put_optional(j, "createdAt", s.created_at);
  put_optional(j, "updatedAt", s.updated_at);
  if (s.version) j["__v"] = *s.version;
}

}  // namespace

std::string new_object_id() {
  auto& r = process_random();
  const auto secs = static_cast<std::uint32_t>(now_ms() / 1000);
  const std::uint32_t count = r.counter.fetch_add(1) & 0xffffff;
  std::array<unsigned char, 12> b{};
  for (int i = 0; i < 4; ++i) b[static_cast<std::size_t>(i)] = (secs >> (24 - 8 * i)) & 0xff;
  for (std::size_t i = 0; i < 5; ++i) b[4 + i] = r.bytes[i];
  for (int i = 0; i < 3; ++i) b[static_cast<std::size_t>(9 + i)] = (count >> (16 - 8 * i)) & 0xff;
  return to_hex(b.data(), b.size());
}

bool is_object_id(std::string_view text) noexcept {
  if (text.size() != 24) return false;
  for (char c : text) {
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    if (!hex) return false;
  }
  return true;
}

std::string new_uuid_v4() {
  std::array<unsigned char, 16> b{};
  random_bytes(b.data(), static_cast<int>(b.size()));
  b[6] = static_cast<unsigned char>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<unsigned char>((b[8] & 0x3f) | 0x80);
  const std::string h = to_hex(b.data(), b.size());
  return h.substr(0, 8) + "-" + h.substr(8, 4) + "-" + h.substr(12, 4) + "-" + h.substr(16, 4) +
         "-" + h.substr(20, 12);
}

std::int64_t now_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(system_clock::now().time_since_epoch()).count();
}

std::string iso_time(std::int64_t ms) { return receiver::format_iso8601_ms(ms); }

std::string user_id_for(std::string_view user_name) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  EVP_Digest(user_name.data(), user_name.size(), digest, &size, EVP_sha256(), nullptr);
  return to_hex(digest, 12);
}

Json Subscription::created_json() const {
  Json j = Json::object();
  put_optional(j, "secret", secret);
  j["global"] = global.value_or(false);
  j["_id"] = id;
  put_common(j, *this);
  return j;
}

Json Subscription::public_json() const {
  Json j = Json::object();
  j["_id"] = id;
  put_common(j, *this);
  return j;
}

Json Subscription::with_secret_json() const {
  Json j = Json::object();
  j["_id"] = id;
  put_optional(j, "secret", secret);
  put_common(j, *this);
  return j;
}

Json HistoryEntry::to_json() const {
  Json j = Json::object();
  j["_id"] = id;
  j["event"] = event;
  j["target"] = target;
  put_optional(j, "response", response);
  put_optional(j, "body", body);
  j["jsonRequest"] = json_request;
  j["err"] = err ? Json(*err) : Json(nullptr);
  j["id_project"] = id_project;
  j["createdAt"] = created_at;
  j["updatedAt"] = updated_at;
  j["__v"] = 0;
  return j;
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path) {
  sqlite3* db = nullptr;
  const int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX;
  if (sqlite3_open_v2(path.c_str(), &db, flags, nullptr) != SQLITE_OK) {
    Error e = db_error(db, "cannot open the simulator database " + path);
    sqlite3_close(db);
    return e;
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_busy_timeout(db, 5000);
  if (path != ":memory:") sqlite3_exec(db, "PRAGMA journal_mode=WAL", nullptr, nullptr, nullptr);
  if (sqlite3_exec(db, schema_sql, nullptr, nullptr, nullptr) != SQLITE_OK) {
    return db_error(db, "cannot create the simulator schema in " + path);
  }
  return store;
}

Store::~Store() { sqlite3_close(db_); }

// Binds a subscription's fields in the order of `subscription_columns`.
static void bind_subscription(Stmt& s, const Subscription& sub) {
  s.bind(1, sub.id);
  s.bind(2, sub.event);
  s.bind(3, sub.target);
  s.bind(4, sub.id_project);
  s.bind(5, sub.created_by);
  s.bind(6, sub.secret);
  s.bind(7, sub.global ? std::optional<std::int64_t>(*sub.global ? 1 : 0) : std::nullopt);
  s.bind(8, sub.created_at);
  s.bind(9, sub.updated_at);
  s.bind(10, sub.version);
}

Result<InsertOutcome> Store::insert(const Subscription& sub) {
  std::lock_guard lock(mutex_);
  Stmt s(db_, std::string("INSERT INTO subscriptions(") + subscription_columns +
                  ") VALUES(?,?,?,?,?,?,?,?,?,?)");
  if (!s.ok()) return db_error(db_, "insert");
  bind_subscription(s, sub);
  const int rc = sqlite3_step(s.get());
  if (rc == SQLITE_DONE) return InsertOutcome::created;
  if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE) return InsertOutcome::duplicate;
  return db_error(db_, "insert");
}

Result<std::vector<Subscription>> Store::query_subscriptions(const std::string& where,
                                                             const std::vector<std::string>& args) {
  Stmt s(db_, std::string("SELECT ") + subscription_columns + " FROM subscriptions WHERE " + where +
                  " ORDER BY seq");
  if (!s.ok()) return db_error(db_, "query");
  for (std::size_t i = 0; i < args.size(); ++i) s.bind(static_cast<int>(i + 1), args[i]);
  std::vector<Subscription> out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) out.push_back(read_subscription(s));
  if (rc != SQLITE_DONE) return db_error(db_, "query");
  return out;
}

namespace {
Result<std::optional<Subscription>> first_of(Result<std::vector<Subscription>> r) {
  if (!r) return std::move(r).error();
  if (r->empty()) return std::optional<Subscription>();
  return std::optional<Subscription>(std::move(r->front()));
}
}  // namespace

Result<std::optional<Subscription>> Store::find(const std::string& id) {
  std::lock_guard lock(mutex_);
  return first_of(query_subscriptions("id = ?", {id}));
}

Result<std::optional<Subscription>> Store::find_first(const std::string& project,
                                                      const std::string& event) {
  std::lock_guard lock(mutex_);
  return first_of(query_subscriptions("id_project = ? AND event = ?", {project, event}));
}

Result<std::optional<Subscription>> Store::find_exact(const std::string& project,
                                                      const std::string& event,
                                                      const std::string& target) {
  std::lock_guard lock(mutex_);
  return first_of(
      query_subscriptions("id_project = ? AND event = ? AND target = ?", {project, event, target}));
}

Result<std::vector<Subscription>> Store::list(const std::string& project) {
  std::lock_guard lock(mutex_);
  return query_subscriptions("id_project = ?", {project});
}

Result<std::vector<Subscription>> Store::matching(const std::string& event,
                                                  const std::string& project) {
  std::lock_guard lock(mutex_);
  return query_subscriptions("event = ? AND (id_project = ? OR global = 1)", {event, project});
}

Result<Subscription> Store::upsert(const std::string& id, const SubscriptionUpdate& u) {
  std::lock_guard lock(mutex_);
  auto existing = first_of(query_subscriptions("id = ?", {id}));
  if (!existing) return std::move(existing).error();
  const std::string now = iso_time(now_ms());
  Subscription sub;
  if (*existing) {
    sub = **existing;
  } else {
    sub.id = id;
    sub.created_at = now;
  }
  if (u.target) sub.target = u.target;
  if (u.event) sub.event = u.event;
  if (u.id_project) sub.id_project = u.id_project;
  if (u.created_by) sub.created_by = u.created_by;
  if (u.secret) sub.secret = u.secret;
  if (u.global) sub.global = u.global;
  sub.updated_at = now;
  const std::string sql =
      *existing ? "UPDATE subscriptions SET event=?2, target=?3, id_project=?4, created_by=?5,"
                  " secret=?6, global=?7, created_at=?8, updated_at=?9, v=?10 WHERE id=?1"
                : std::string("INSERT INTO subscriptions(") + subscription_columns +
                      ") VALUES(?1,?2,?3,?4,?5,?6,?7,?8,?9,?10)";
  Stmt s(db_, sql);
  if (!s.ok()) return db_error(db_, "update");
  bind_subscription(s, sub);
  if (sqlite3_step(s.get()) != SQLITE_DONE) {
    if (sqlite3_extended_errcode(db_) == SQLITE_CONSTRAINT_UNIQUE) {
      return Error{ErrorCode::invalid_input, "duplicate key (id_project, event, target)"};
    }
    return db_error(db_, "update");
  }
  return sub;
}

Result<std::optional<Subscription>> Store::remove(const std::string& id) {
  std::lock_guard lock(mutex_);
  auto existing = first_of(query_subscriptions("id = ?", {id}));
  if (!existing || !*existing) return existing;
  Stmt s(db_, "DELETE FROM subscriptions WHERE id = ?");
  if (!s.ok()) return db_error(db_, "delete");
  s.bind(1, id);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return db_error(db_, "delete");
  return existing;
}

Status Store::add_history(const HistoryEntry& e) {
  std::lock_guard lock(mutex_);
  Stmt s(db_,
         "INSERT INTO history(id, id_project, event, target, response, body, json_request, err,"
         " created_at, updated_at) VALUES(?,?,?,?,?,?,?,?,?,?)");
  if (!s.ok()) return db_error(db_, "history");
  s.bind(1, e.id);
  s.bind(2, e.id_project);
  s.bind(3, e.event);
  s.bind(4, e.target);
  s.bind(5, e.response);
  s.bind(6, e.body);
  s.bind(7, e.json_request);
  s.bind(8, e.err);
  s.bind(9, e.created_at);
  s.bind(10, e.updated_at);
  if (sqlite3_step(s.get()) != SQLITE_DONE) return db_error(db_, "history");
  return Ok{};
}

Result<std::vector<HistoryEntry>> Store::history(const std::string& project, std::int64_t page) {
  std::lock_guard lock(mutex_);
  Stmt s(db_,
         "SELECT id, id_project, event, target, response, body, json_request, err, created_at,"
         " updated_at FROM history WHERE id_project = ? ORDER BY created_at DESC, seq DESC"
         " LIMIT ? OFFSET ?");
  if (!s.ok()) return db_error(db_, "history");
  s.bind(1, project);
  s.bind(2, std::optional<std::int64_t>(history_page_size));
  s.bind(3, std::optional<std::int64_t>(page * history_page_size));
  std::vector<HistoryEntry> out;
  int rc = SQLITE_ROW;
  while ((rc = sqlite3_step(s.get())) == SQLITE_ROW) {
    HistoryEntry e;
    e.id = s.text(0).value_or("");
    e.id_project = s.text(1).value_or("");
    e.event = s.text(2).value_or("");
    e.target = s.text(3).value_or("");
    e.response = s.text(4);
    e.body = s.text(5);
    e.json_request = s.text(6).value_or("");
    e.err = s.text(7);
    e.created_at = s.text(8).value_or("");
    e.updated_at = s.text(9).value_or("");
    out.push_back(std::move(e));
  }
  if (rc != SQLITE_DONE) return db_error(db_, "history");
  return out;
}

}  // namespace tdhook::tools::sim
