#pragma once
// A thin RAII layer over the SQLite C API for the spool (internal to spool_*.cpp).
//
// Every statement is prepared once and reused; Query resets it when it goes out of scope, so that
// no read transaction stays open on a connection (an open one would stop WAL checkpoints).

#include <sqlite3.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include "tdhook/result.hpp"

namespace tdhook::receiver::detail {

// The outcome of a failed SQLite call: the primary result code and SQLite's message.
struct SqlFailure {
  int code = SQLITE_OK;
  std::string message;
};

class Statement;

class Connection {
 public:
  Connection() = default;
  Connection(Connection&& other) noexcept;
  Connection& operator=(Connection&& other) noexcept;
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;
  ~Connection();

  // `flags` as for sqlite3_open_v2. On failure `failure` says why and the result is closed.
  static Connection open(const std::filesystem::path& path, int flags, SqlFailure& failure);

  bool is_open() const noexcept { return db_ != nullptr; }
  sqlite3* get() const noexcept { return db_; }
  SqlFailure last_failure(int code) const;

  // Runs one or more statements that return no rows.
  bool exec(const char* sql, SqlFailure& failure);
  bool prepare(std::string_view sql, Statement& out, SqlFailure& failure);
  bool in_transaction() const noexcept {
    return db_ != nullptr && sqlite3_get_autocommit(db_) == 0;
  }
  std::int64_t changes() const noexcept { return sqlite3_changes64(db_); }
  std::int64_t last_insert_rowid() const noexcept { return sqlite3_last_insert_rowid(db_); }

 private:
  sqlite3* db_ = nullptr;
};

class Statement {
 public:
  Statement() = default;
  Statement(Statement&& other) noexcept;
  Statement& operator=(Statement&& other) noexcept;
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;
  ~Statement();

  sqlite3_stmt* get() const noexcept { return stmt_; }
  void reset(sqlite3_stmt* stmt) noexcept;

 private:
  sqlite3_stmt* stmt_ = nullptr;
};

// One use of a prepared statement: bind, step, read columns; reset on destruction.
class Query {
 public:
  explicit Query(Statement& statement) noexcept : stmt_(statement.get()) {}
  Query(const Query&) = delete;
  Query& operator=(const Query&) = delete;
  ~Query();

  // Parameters are 1-based, as in SQLite.
  Query& bind(int index, std::int64_t value);
  Query& bind(int index, std::string_view text);
  Query& bind_null(int index);

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int step() noexcept { return sqlite3_step(stmt_); }
  std::int64_t integer(int column) const noexcept { return sqlite3_column_int64(stmt_, column); }
  std::string text(int column) const;
  bool is_null(int column) const noexcept {
    return sqlite3_column_type(stmt_, column) == SQLITE_NULL;
  }

 private:
  sqlite3_stmt* stmt_;
};

// An IMMEDIATE transaction (takes the write lock at once, so the busy timeout applies); rolled
// back on destruction unless committed.
class Transaction {
 public:
  explicit Transaction(Connection& connection) noexcept : db_(connection) {}
  Transaction(const Transaction&) = delete;
  Transaction& operator=(const Transaction&) = delete;
  ~Transaction();

  bool begin(SqlFailure& failure);
  bool commit(SqlFailure& failure);
  void rollback() noexcept;

 private:
  Connection& db_;
  bool active_ = false;
};

std::string describe(const SqlFailure& failure);

}  // namespace tdhook::receiver::detail
