#include "store/sqlite/spool_sqlite.hpp"

#include <cstring>
#include <utility>

namespace tdhook::receiver::detail {

Connection::Connection(Connection&& other) noexcept : db_(std::exchange(other.db_, nullptr)) {}

Connection& Connection::operator=(Connection&& other) noexcept {
  if (this != &other) {
    if (db_ != nullptr) sqlite3_close_v2(db_);
    db_ = std::exchange(other.db_, nullptr);
  }
  return *this;
}

Connection::~Connection() {
  if (db_ != nullptr) sqlite3_close_v2(db_);
}

Connection Connection::open(const std::filesystem::path& path, int flags, SqlFailure& failure) {
  Connection connection;
  const int rc = sqlite3_open_v2(path.c_str(), &connection.db_, flags, nullptr);
  if (rc != SQLITE_OK) {
    failure = SqlFailure{
        rc, connection.db_ != nullptr ? sqlite3_errmsg(connection.db_) : sqlite3_errstr(rc)};
    // "unable to open database file" alone does not say whether the disk is read-only or full.
    if (const int err = connection.db_ != nullptr ? sqlite3_system_errno(connection.db_) : 0) {
      failure.message += std::string(": ") + std::strerror(err);
    }
    return Connection{};
  }
  // Extended codes distinguish SQLITE_IOERR_* kinds in messages; primary codes still compare.
  sqlite3_extended_result_codes(connection.db_, 1);
  return connection;
}

SqlFailure Connection::last_failure(int code) const {
  return SqlFailure{code & 0xff, db_ != nullptr ? sqlite3_errmsg(db_) : sqlite3_errstr(code)};
}

bool Connection::exec(const char* sql, SqlFailure& failure) {
  char* message = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &message);
  if (rc == SQLITE_OK) return true;
  failure = SqlFailure{rc & 0xff, message != nullptr ? message : sqlite3_errstr(rc)};
  sqlite3_free(message);
  return false;
}

bool Connection::prepare(std::string_view sql, Statement& out, SqlFailure& failure) {
  sqlite3_stmt* stmt = nullptr;
  const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt, nullptr);
  if (rc != SQLITE_OK) {
    failure = last_failure(rc);
    return false;
  }
  out.reset(stmt);
  return true;
}

Statement::Statement(Statement&& other) noexcept : stmt_(std::exchange(other.stmt_, nullptr)) {}

Statement& Statement::operator=(Statement&& other) noexcept {
  if (this != &other) reset(std::exchange(other.stmt_, nullptr));
  return *this;
}

Statement::~Statement() { sqlite3_finalize(stmt_); }

void Statement::reset(sqlite3_stmt* stmt) noexcept {
  sqlite3_finalize(stmt_);
  stmt_ = stmt;
}

Query::~Query() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Query& Query::bind(int index, std::int64_t value) {
  sqlite3_bind_int64(stmt_, index, value);
  return *this;
}

Query& Query::bind(int index, std::string_view text) {
  // A null data pointer would bind NULL, not the empty string. SQLITE_TRANSIENT: the caller's
  // buffer may not outlive the step.
  const char* data = text.data() != nullptr ? text.data() : "";
  sqlite3_bind_text64(stmt_, index, data, text.size(), SQLITE_TRANSIENT, SQLITE_UTF8);
  return *this;
}

Query& Query::bind_null(int index) {
  sqlite3_bind_null(stmt_, index);
  return *this;
}

std::string Query::text(int column) const {
  const auto* data = sqlite3_column_text(stmt_, column);
  const int size = sqlite3_column_bytes(stmt_, column);
  if (data == nullptr) return {};
  return std::string(reinterpret_cast<const char*>(data), static_cast<std::size_t>(size));
}

Transaction::~Transaction() { rollback(); }

bool Transaction::begin(SqlFailure& failure) {
  active_ = db_.exec("BEGIN IMMEDIATE", failure);
  return active_;
}

bool Transaction::commit(SqlFailure& failure) {
  if (db_.exec("COMMIT", failure)) {
    active_ = false;
    return true;
  }
  rollback();
  return false;
}

void Transaction::rollback() noexcept {
  // After SQLITE_FULL or an I/O error SQLite may already have rolled back on its own.
  if (active_ && db_.in_transaction()) {
    SqlFailure ignored;
    db_.exec("ROLLBACK", ignored);
  }
  active_ = false;
}

std::string describe(const SqlFailure& failure) {
  std::string text = failure.message;
  const char* kind = sqlite3_errstr(failure.code);
  if (kind != nullptr && text != kind) text += std::string(" (") + kind + ")";
  return text;
}

}  // namespace tdhook::receiver::detail
