// The SQL of the spool, prepared once per connection.
#include <chrono>
#include <utility>

#include "store/sqlite/spool_impl.hpp"

namespace tdhook::receiver {
namespace {

struct Entry {
  detail::Statement* target;
  const char* sql;
};

bool prepare_all(detail::Connection& db, std::initializer_list<Entry> entries,
                 detail::SqlFailure& failure) {
  for (const auto& entry : entries) {
    if (!db.prepare(entry.sql, *entry.target, failure)) {
      failure.message += std::string(" in: ") + entry.sql;
      return false;
    }
  }
  return true;
}

constexpr const char* kDeliveryColumns =
    "e.delivery_id, d.sink, e.event, e.project_id, e.timestamp, e.received_at, d.state, "
    "d.attempts, d.next_attempt_at, d.last_error";

}  // namespace

bool prepare_write_statements(detail::Connection& db, WriteStatements& w,
                              detail::SqlFailure& failure) {
  return prepare_all(
      db,
      {
          {&w.dedup_find, "SELECT delivery_id, received_at FROM dedup WHERE key=?1"},
          {&w.dedup_put,
           "INSERT OR REPLACE INTO dedup(key, delivery_id, received_at) VALUES(?1, ?2, ?3)"},
          {&w.dedup_expire, "DELETE FROM dedup WHERE received_at < ?1"},
          {&w.event_insert,
           "INSERT INTO events(delivery_id, event, project_id, subscription_id, timestamp, "
           "received_at, record) VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7)"},
          {&w.delivery_insert,
           "INSERT INTO deliveries(event_row, sink, state, attempts, next_attempt_at, "
           "last_error, updated_at) VALUES(?1, ?2, 'pending', 0, ?3, '', ?4)"},
          {&w.mark,
           "UPDATE deliveries SET state=?1, attempts=max(attempts, ?2), next_attempt_at=?3, "
           "last_error=?4, updated_at=?5 WHERE sink=?6 AND event_row=?7 AND state='pending'"},
          // An attempt of an event purged meanwhile is not recorded (nothing to attach it to).
          {&w.attempt_insert,
           "INSERT INTO attempts(event_row, sink, number, started_at, finished_at, ok, error) "
           "SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE EXISTS(SELECT 1 FROM events WHERE row=?1)"},
          {&w.has_pending,
           "SELECT EXISTS(SELECT 1 FROM deliveries WHERE event_row=?1 AND state='pending')"},
          {&w.count_pending,
           "SELECT count(DISTINCT event_row) FROM deliveries WHERE state='pending'"},
          {&w.data_version, "PRAGMA data_version"},
          {&w.event_row_of, "SELECT row FROM events WHERE delivery_id=?1"},
          {&w.retry_one,
           "UPDATE deliveries SET state='pending', next_attempt_at=?2, updated_at=?2 "
           "WHERE event_row=?1 AND state<>'delivered'"},
          {&w.retry_dead,
           "UPDATE deliveries SET state='pending', next_attempt_at=?1, updated_at=?1 "
           "WHERE state='dead'"},
          {&w.purge_select,
           "SELECT row FROM events e WHERE received_at < ?1 AND NOT EXISTS(SELECT 1 FROM "
           "deliveries d WHERE d.event_row=e.row AND d.state<>'delivered') LIMIT 100"},
          {&w.purge_attempts, "DELETE FROM attempts WHERE event_row=?1"},
          {&w.purge_deliveries, "DELETE FROM deliveries WHERE event_row=?1"},
          {&w.purge_event, "DELETE FROM events WHERE row=?1"},
      },
      failure);
}

bool prepare_read_statements(detail::Connection& db, ReadStatements& r,
                             detail::SqlFailure& failure) {
  const std::string show_deliveries = std::string("SELECT ") + kDeliveryColumns +
                                      " FROM deliveries d JOIN events e ON e.row=d.event_row "
                                      "WHERE d.event_row=?1 ORDER BY d.sink";
  return prepare_all(
      db,
      {
          {&r.due,
           "SELECT d.event_row, e.delivery_id, d.sink, e.event, e.project_id, "
           "e.subscription_id, e.timestamp, e.record, d.attempts, e.received_at FROM deliveries d "
           "JOIN events e ON e.row=d.event_row WHERE d.sink=?1 AND d.state='pending' AND "
           "d.next_attempt_at<=?2 ORDER BY d.next_attempt_at, d.event_row LIMIT ?3"},
          {&r.next_due,
           "SELECT min(next_attempt_at) FROM deliveries WHERE sink=?1 AND state='pending'"},
          // An event stored for no sink has no delivery row: it is listed as delivered.
          {&r.list,
           "SELECT e.delivery_id, coalesce(d.sink, ''), e.event, e.project_id, e.timestamp, "
           "e.received_at, coalesce(d.state, 'delivered'), coalesce(d.attempts, 0), "
           "coalesce(d.next_attempt_at, 0), coalesce(d.last_error, '') FROM events e "
           "LEFT JOIN deliveries d ON d.event_row=e.row WHERE "
           "(?1 IS NULL OR coalesce(d.state, 'delivered')=?1) AND (?2 IS NULL OR d.sink=?2) AND "
           "(?3 IS NULL OR e.received_at>=?3) AND (?4 IS NULL OR e.received_at<?4) "
           "ORDER BY e.row, d.sink"},
          {&r.show_event, "SELECT row, record FROM events WHERE delivery_id=?1"},
          {&r.show_deliveries, show_deliveries.c_str()},
          {&r.show_attempts,
           "SELECT sink, number, started_at, finished_at, ok, error FROM attempts "
           "WHERE event_row=?1 ORDER BY sink, number, rowid"},
          {&r.counts,
           "SELECT state, count(*) FROM deliveries WHERE (?1 IS NULL OR sink=?1) GROUP BY state"},
      },
      failure);
}

std::string_view to_string(DeliveryState state) noexcept {
  switch (state) {
    case DeliveryState::pending:
      return "pending";
    case DeliveryState::delivered:
      return "delivered";
    case DeliveryState::dead:
      return "dead";
  }
  return "pending";
}

DeliveryState parse_state(std::string_view text) noexcept {
  if (text == "delivered") return DeliveryState::delivered;
  if (text == "dead") return DeliveryState::dead;
  return DeliveryState::pending;
}

std::int64_t spool_now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace tdhook::receiver
