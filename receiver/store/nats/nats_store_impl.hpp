#pragma once
// The JetStream store's class (nats_store.hpp says what it keeps where). Its parts:
//   nats_store.cpp    connection, streams and consumers, put_batch, due, mark_batch, health
//   nats_inspect.cpp  what `tdhook spool` asks: list, show, counts, retry, purge
#include <nats/nats.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <vector>

#include "base/log.hpp"
#include "store/nats/nats_store.hpp"
#include "store/store.hpp"

namespace tdhook::receiver::nats {

// Header names of the event messages (and of dead letters, which carry the same plus their own).
inline constexpr const char* kDeliveryId = "Tdhook-Delivery-Id";
inline constexpr const char* kEvent = "Tdhook-Event";
inline constexpr const char* kProject = "Tdhook-Project";
inline constexpr const char* kSubscription = "Tdhook-Subscription";
inline constexpr const char* kTimestamp = "Tdhook-Timestamp";
inline constexpr const char* kReceivedAt = "Tdhook-Received-At";
inline constexpr const char* kSinks = "Tdhook-Sinks";         // sink tokens, comma-separated
inline constexpr const char* kAttempts = "Tdhook-Attempts";   // made before this message
inline constexpr const char* kSink = "Tdhook-Sink";           // dead letter: the sink's name
inline constexpr const char* kError = "Tdhook-Error";         // dead letter: the last error
inline constexpr const char* kEventSeq = "Tdhook-Event-Seq";  // dead letter: stream sequence
inline constexpr const char* kDeadAt = "Tdhook-Dead-At";
// Present when the event kept its original request (NewEvent::original, for forward: sinks): the
// message's data is then the record followed by the original, and this is the record's length.
inline constexpr const char* kRecordLength = "Tdhook-Record-Length";

struct MsgDeleter {
  void operator()(natsMsg* m) const noexcept { natsMsg_Destroy(m); }
};
using MsgPtr = std::unique_ptr<natsMsg, MsgDeleter>;

// A header's value, "" when absent.
std::string header(natsMsg* msg, const char* name);
std::int64_t header_int(natsMsg* msg, const char* name);
// The data of an event message or a dead letter: the record, and the original that follows it
// when kRecordLength says so ("" otherwise).
void split_data(natsMsg* msg, std::string& record, std::string& original);
// The data that split_data() reads back as `record` and `original` (with kRecordLength set when
// `original` is not empty).
std::string join_data(std::string_view record, std::string_view original);
// An error with the library's text (and JetStream's code when there is one).
Error nats_error(const std::string& what, natsStatus s, jsErrCode code = static_cast<jsErrCode>(0));

// One sink's consumer, as this process holds it.
struct Consumer {
  NatsSinkOptions options;
  std::string token;    // the sink's name as Tdhook-Sinks and subjects carry it
  std::string durable;  // <stream>_<token>
  natsSubscription* sub = nullptr;
  std::mutex mu;  // held and sub's fetches
  struct Held {
    MsgPtr msg;
    Delivery delivery;
  };
  std::map<std::uint64_t, Held> held;  // fetched by due(), not settled yet, by stream sequence
  std::atomic<std::int64_t> pending{0}, ack_pending{0};
};

class NatsStore final : public Store {
 public:
  NatsStore(NatsStoreOptions options, const Logger& log);
  ~NatsStore() override;
  NatsStore(const NatsStore&) = delete;
  NatsStore& operator=(const NatsStore&) = delete;

  Status open();

  std::vector<PutResult> put_batch(std::vector<NewEvent> events) override;
  // put_batch() without taking the events: the caller keeps them (the local fallback stores
  // those that failed, fallback.hpp).
  std::vector<PutResult> publish(const std::vector<NewEvent>& events);
  bool connected() const noexcept;
  // The stream's duplicate window, as the server reported it once the stream was set up.
  std::chrono::milliseconds duplicate_window() const noexcept { return duplicate_window_; }
  Result<std::vector<Delivery>> due(const std::string& sink, std::int64_t now_ms,
                                    std::size_t limit) override;
  std::optional<std::int64_t> next_due(const std::string& sink) override;
  Status mark_batch(const std::vector<Mark>& marks) override;
  std::int64_t pending_total() const noexcept override { return pending_.load(); }
  bool writable() const noexcept override;
  std::uint64_t commits() const noexcept override { return commits_.load(); }
  std::size_t writers() const noexcept override { return 4; }
  std::uint64_t disk_bytes() const noexcept override { return stream_bytes_.load(); }
  // The servers' max_payload, less room for the headers.
  std::uint64_t max_event_bytes() const noexcept override;
  void set_on_commit(std::function<void()> callback) override;
  std::string metrics_text() const override;
  std::string health_json() const override;

  // nats_inspect.cpp
  Result<std::int64_t> retry(const std::optional<std::string>& delivery_id, bool all_dead) override;
  Result<std::int64_t> purge_delivered(std::int64_t older_than_ms) override;
  Result<std::vector<DeliveryInfo>> list(const ListFilter& filter) override;
  Result<Details> show(const std::string& delivery_id) override;
  Result<StoreCounts> counts(const std::optional<std::string>& sink) override;

 private:
  Status connect();
  Status setup_streams();
  Status setup_consumer(Consumer& c, bool stream_had_messages);
  Status discover_consumers();  // for_inspection: the consumers the stream has
  void stats_loop();
  void refresh_stats();
  Consumer* consumer_of(const std::string& sink) noexcept;
  std::string subject_of(const NewEvent& e) const;
  Result<MsgPtr> message_of(const NewEvent& e, std::string& sinks_header) const;
  Status dead_letter(Consumer& c, Consumer::Held& h, const Attempt& attempt);
  std::optional<Delivery> delivery_of(Consumer& c, natsMsg* msg) const;
  static void on_ack(jsCtx* js, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure);
  static void on_disconnected(natsConnection* nc, void* closure);
  static void on_reconnected(natsConnection* nc, void* closure);
  static void on_error(natsConnection* nc, natsSubscription* sub, natsStatus err, void* closure);

  // nats_inspect.cpp
  // Every message of `stream` whose subject matches `filter`, oldest first, headers only unless
  // `with_data`; `visit` returns false to stop.
  Status scan(const std::string& stream, const std::string& filter, bool with_data,
              const std::function<bool(natsMsg*, std::uint64_t)>& visit);
  // A sink's consumer as the server sees it.
  struct FloorInfo {
    std::string sink;
    std::uint64_t ack_floor = 0;  // stream sequence acknowledged in order
    std::int64_t pending = 0;     // not delivered yet, or handed out and not settled
    std::int64_t acked = 0;       // deliveries acknowledged in order (consumer sequence)
  };
  Result<std::vector<FloorInfo>> floors(const std::optional<std::string>& sink);
  DeliveryInfo info_of(natsMsg* msg, const std::string& sink, DeliveryState state) const;

  NatsStoreOptions options_;
  Logger log_;
  std::string prefix_;       // the stream's name in lower case: subjects <prefix>.events...
  std::string dead_stream_;  // <stream>_DEAD
  natsOptions* nopts_ = nullptr;
  natsConnection* nc_ = nullptr;
  jsCtx* js_pub_ = nullptr;  // put_batch's asynchronous publishes (one batch at a time)
  jsCtx* js_ = nullptr;      // every other JetStream call
  std::vector<std::unique_ptr<Consumer>> consumers_;

  // Batches being acknowledged, several at once (SpoolWriter runs writers() threads); on_ack
  // runs on the library's thread.
  struct Batch {
    std::vector<PutResult>* results = nullptr;
    std::vector<std::uint64_t> dup_seq;  // duplicate: the first occurrence's sequence
    std::size_t left = 0;                // publishes not answered yet
  };
  std::mutex batch_mu_;
  std::condition_variable batch_cv_;
  // message -> its batch and its event's position there
  std::unordered_map<natsMsg*, std::pair<Batch*, std::size_t>> in_flight_;

  std::atomic<bool> connected_{false}, stream_ok_{false}, closing_{false};
  std::chrono::milliseconds duplicate_window_{0};
  std::atomic<std::uint64_t> commits_{0}, stream_msgs_{0}, stream_bytes_{0}, dead_msgs_{0};
  std::atomic<std::int64_t> pending_{0};
  std::mutex callback_mu_;
  std::function<void()> on_commit_;

  std::mutex stats_mu_;
  std::condition_variable stats_cv_;
  bool stopping_ = false;
  std::thread stats_thread_;
};

}  // namespace tdhook::receiver::nats
