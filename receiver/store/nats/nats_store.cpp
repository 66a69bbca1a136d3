// The JetStream store: connection, streams and consumers, publishing events, handing them to
// the sinks and settling them (nats_store.hpp).
#include "store/nats/nats_store.hpp"

#include <algorithm>
#include <cctype>
#include <charconv>
#include <chrono>
#include <fstream>
#include <sstream>

#include "store/nats/nats_store_impl.hpp"

namespace tdhook::receiver {
namespace nats {
namespace {

using std::chrono::milliseconds;

constexpr std::int64_t kNsPerMs = 1000000;
// How long due() waits for a message when there is none (a long poll: new events from any
// receiver reach the sink within a round trip, without waking this process).
constexpr std::int64_t kFetchWaitMs = 250;
constexpr milliseconds kStatsEvery{1000};
constexpr std::size_t kMaxErrorHeader = 1000;
// Room in a message for its Tdhook-* headers (ids, event, sinks, a dead letter's error).
constexpr std::int64_t kHeaderRoom = 16 * 1024;
// Undelivered messages are kept at least this long (and at least the de-duplication window):
// a sink that is down for days still gets its events.
constexpr std::int64_t kMinMaxAgeMs = 7LL * 24 * 3600 * 1000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// A subject token: no separators, wildcards or white space; never empty.
std::string token_of(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out.push_back(c == '.' || c == '*' || c == '>' || std::isspace(u) != 0 || u < 0x20 ? '_' : c);
  }
  return out.empty() ? "_" : out;
}

// A header value on one line.
std::string header_value(std::string_view s, std::size_t most = SIZE_MAX) {
  std::string out(s.substr(0, most));
  for (auto& c : out) {
    if (c == '\r' || c == '\n' || c == '\0') c = ' ';
  }
  return out;
}

std::uint32_t fnv1a(std::string_view s) {
  std::uint32_t h = 2166136261u;
  for (const char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

// The sink's name as a consumer-name and subject token: [A-Za-z0-9_-], at most 48 characters;
// a name that had to be changed gets 8 hex digits of its hash, so that two names stay apart.
std::string sink_token(std::string_view sink) {
  std::string out;
  bool changed = sink.empty() || sink.size() > 48;
  for (const char c : sink) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) != 0 || c == '_' || c == '-') {
      out.push_back(c);
    } else {
      out.push_back('_');
      changed = true;
    }
  }
  if (!changed) return out;
  char hash[9];
  std::snprintf(hash, sizeof hash, "%08x", fnv1a(sink));
  if (out.size() > 39) out.resize(39);
  return out + "_" + hash;
}

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  std::size_t start = 0;
  while (start <= s.size()) {
    const auto end = s.find(sep, start);
    const auto piece =
        s.substr(start, end == std::string_view::npos ? s.size() - start : end - start);
    if (!piece.empty()) out.emplace_back(piece);
    if (end == std::string_view::npos) break;
    start = end + 1;
  }
  return out;
}

// The headers every event message carries (dead letters too), each value on one line.
void set_event_headers(natsMsg* msg, std::string_view delivery_id, std::string_view event,
                       std::string_view project, std::string_view subscription,
                       std::int64_t timestamp_ms, std::int64_t received_at_ms,
                       const std::string& sinks) {
  natsMsgHeader_Set(msg, kDeliveryId, header_value(delivery_id).c_str());
  natsMsgHeader_Set(msg, kEvent, header_value(event).c_str());
  natsMsgHeader_Set(msg, kProject, header_value(project).c_str());
  natsMsgHeader_Set(msg, kSubscription, header_value(subscription).c_str());
  natsMsgHeader_Set(msg, kTimestamp, std::to_string(timestamp_ms).c_str());
  natsMsgHeader_Set(msg, kReceivedAt, std::to_string(received_at_ms).c_str());
  natsMsgHeader_Set(msg, kSinks, sinks.c_str());
}

std::string trim(std::string s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back())) != 0) s.pop_back();
  std::size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i])) != 0) ++i;
  return s.substr(i);
}

}  // namespace

std::string header(natsMsg* msg, const char* name) {
  const char* value = nullptr;
  if (natsMsgHeader_Get(msg, name, &value) != NATS_OK || value == nullptr) return {};
  return value;
}

void split_data(natsMsg* msg, std::string& record, std::string& original) {
  const char* data = natsMsg_GetData(msg);
  const auto size = static_cast<std::size_t>(std::max(natsMsg_GetDataLength(msg), 0));
  const std::string_view bytes(data != nullptr ? data : "", data != nullptr ? size : 0);
  std::size_t record_size = bytes.size();
  if (const auto length = header(msg, kRecordLength); !length.empty()) {
    std::size_t n = 0;
    const auto [end, ec] = std::from_chars(length.data(), length.data() + length.size(), n);
    // A length that is no number or lies past the data: all of it is the record, as before.
    if (ec == std::errc() && end == length.data() + length.size() && n <= bytes.size())
      record_size = n;
  }
  record.assign(bytes.substr(0, record_size));
  original.assign(bytes.substr(record_size));
}

std::string join_data(std::string_view record, std::string_view original) {
  std::string data;
  data.reserve(record.size() + original.size());
  data.append(record).append(original);
  return data;
}

std::int64_t header_int(natsMsg* msg, const char* name) {
  const auto text = header(msg, name);
  if (text.empty()) return 0;
  try {
    return std::stoll(text);
  } catch (const std::exception&) {
    return 0;
  }
}

Error nats_error(const std::string& what, natsStatus s, jsErrCode code) {
  std::string detail = what + ": " + natsStatus_GetText(s);
  if (code != 0) detail += " (JetStream error " + std::to_string(static_cast<int>(code)) + ")";
  const char* last = nats_GetLastError(nullptr);
  if (last != nullptr && *last != '\0' && detail.find(last) == std::string::npos) {
    detail += ": ";
    detail += last;
  }
  return Error{ErrorCode::invalid_input, detail};
}

NatsStore::NatsStore(NatsStoreOptions options, const Logger& log)
    : options_(std::move(options)),
      log_(log),
      prefix_(lower(options_.stream)),
      dead_stream_(options_.stream + "_DEAD") {}

NatsStore::~NatsStore() {
  {
    std::lock_guard lock(stats_mu_);
    stopping_ = true;
  }
  stats_cv_.notify_all();
  if (stats_thread_.joinable()) stats_thread_.join();
  for (auto& c : consumers_) {
    std::lock_guard lock(c->mu);
    // Held, unsettled messages are redelivered by the server after their ack wait.
    c->held.clear();
    if (c->sub != nullptr) natsSubscription_Destroy(c->sub);
    c->sub = nullptr;
  }
  if (js_pub_ != nullptr) jsCtx_Destroy(js_pub_);
  if (js_ != nullptr) jsCtx_Destroy(js_);
  if (nc_ != nullptr) {
    closing_.store(true);
    natsConnection_Close(nc_);
    natsConnection_Destroy(nc_);
  }
  if (nopts_ != nullptr) natsOptions_Destroy(nopts_);
  // The library's own threads and global state go too (a process holds one store; the library
  // opens itself again if another is made), so that nothing of it is left at exit.
  nats_CloseAndWait(2000);
}

Status NatsStore::connect() {
  if (auto s = natsOptions_Create(&nopts_); s != NATS_OK) return nats_error("nats options", s);
  std::vector<std::string> urls;
  bool tls = false;
  for (auto& u : split(options_.url, ',')) {
    u = trim(u);
    if (u.find("://") == std::string::npos) u = "nats://" + u;
    if (u.starts_with("tls://")) tls = true;
    urls.push_back(u);
  }
  if (urls.empty()) {
    return Error{ErrorCode::invalid_config, "--store needs nats://HOST:PORT[,HOST:PORT...]"};
  }
  std::vector<const char*> servers;
  for (const auto& u : urls) servers.push_back(u.c_str());
  natsOptions_SetServers(nopts_, servers.data(), static_cast<int>(servers.size()));
  natsOptions_SetName(nopts_, "tdhook-receiver");
  natsOptions_SetTimeout(nopts_, options_.timeout.count());
  natsOptions_SetMaxReconnect(nopts_, -1);  // forever: a cluster that comes back is used again
  natsOptions_SetReconnectWait(nopts_, 250);
  natsOptions_SetReconnectJitter(nopts_, 100, 500);
  natsOptions_SetPingInterval(nopts_, 2000);
  natsOptions_SetMaxPingsOut(nopts_, 2);
  natsOptions_SetFailRequestsOnDisconnect(nopts_, true);
  natsOptions_SetDisconnectedCB(nopts_, &NatsStore::on_disconnected, this);
  natsOptions_SetReconnectedCB(nopts_, &NatsStore::on_reconnected, this);
  natsOptions_SetErrorHandler(nopts_, &NatsStore::on_error, this);
  if (tls) {
    natsOptions_SetSecure(nopts_, true);
    if (!options_.ca_file.empty()) {
      if (auto s = natsOptions_LoadCATrustedCertificates(nopts_, options_.ca_file.c_str());
          s != NATS_OK) {
        return nats_error("cannot load --store-ca " + options_.ca_file.string(), s);
      }
    }
  } else if (!options_.ca_file.empty()) {
    return Error{ErrorCode::invalid_config, "--store-ca needs a tls:// store URL"};
  }
  if (!options_.creds_file.empty()) {
    std::ifstream in(options_.creds_file, std::ios::binary);
    if (!in) {
      return Error{ErrorCode::invalid_config,
                   "cannot read --store-creds " + options_.creds_file.string()};
    }
    std::ostringstream text;
    text << in.rdbuf();
    const std::string content = text.str();
    natsStatus s = NATS_OK;
    if (content.find("-----BEGIN NATS USER JWT-----") != std::string::npos) {
      s = natsOptions_SetUserCredentialsFromFiles(nopts_, options_.creds_file.c_str(), nullptr);
    } else {
      const std::string line = trim(content.substr(0, content.find('\n')));
      if (line.empty()) {
        return Error{ErrorCode::invalid_config,
                     "--store-creds " + options_.creds_file.string() +
                         " is empty (expected a .creds file, user:password or a token)"};
      }
      const auto colon = line.find(':');
      s = colon == std::string::npos
              ? natsOptions_SetToken(nopts_, line.c_str())
              : natsOptions_SetUserInfo(nopts_, line.substr(0, colon).c_str(),
                                        line.substr(colon + 1).c_str());
    }
    if (s != NATS_OK) {
      return nats_error("cannot use --store-creds " + options_.creds_file.string(), s);
    }
  }
  if (auto s = natsConnection_Connect(&nc_, nopts_); s != NATS_OK) {
    nc_ = nullptr;
    return nats_error("cannot connect to " + options_.url, s);
  }
  connected_.store(true);
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Wait = options_.timeout.count();
  if (auto s = natsConnection_JetStream(&js_, nc_, &jo); s != NATS_OK) {
    return nats_error("JetStream", s);
  }
  jsOptions_Init(&jo);
  jo.Wait = options_.timeout.count();
  jo.PublishAsync.MaxPending = 8192;
  jo.PublishAsync.AckHandler = &NatsStore::on_ack;
  jo.PublishAsync.AckHandlerClosure = this;
  if (auto s = natsConnection_JetStream(&js_pub_, nc_, &jo); s != NATS_OK) {
    return nats_error("JetStream", s);
  }
  return Ok{};
}

Status NatsStore::setup_streams() {
  jsErrCode code = static_cast<jsErrCode>(0);
  jsStreamInfo* si = nullptr;
  auto s = js_GetStreamInfo(&si, js_, options_.stream.c_str(), nullptr, &code);
  const bool exists = s == NATS_OK;
  bool had_messages = false;
  if (exists) {
    had_messages = si->State.Msgs > 0;
    const bool file = si->Config->Storage == js_FileStorage;
    jsStreamInfo_Destroy(si);
    if (!file) {
      return Error{ErrorCode::invalid_config,
                   "stream " + options_.stream + " uses memory storage; tdhook needs file storage"};
    }
  } else if (code != JSStreamNotFoundErr) {
    return nats_error("cannot look up stream " + options_.stream, s, code);
  }
  if (options_.for_inspection) {
    if (!exists) {
      return Error{ErrorCode::invalid_input,
                   "no stream " + options_.stream + " on " + options_.url};
    }
    return discover_consumers();
  }
  const std::string events = prefix_ + ".events.>";
  const std::string retries = prefix_ + ".retry.>";
  const char* subjects[] = {events.c_str(), retries.c_str()};
  jsStreamConfig cfg;
  jsStreamConfig_Init(&cfg);
  cfg.Name = options_.stream.c_str();
  cfg.Subjects = subjects;
  cfg.SubjectsLen = 2;
  cfg.Storage = js_FileStorage;
  cfg.Replicas = options_.replicas;
  cfg.Discard = js_DiscardNew;  // a full stream refuses new events rather than dropping old ones
  cfg.Duplicates = options_.dedup_window.count() * kNsPerMs;
  cfg.MaxAge = std::max(options_.dedup_window.count(), kMinMaxAgeMs) * kNsPerMs;
  s = exists ? js_UpdateStream(&si, js_, &cfg, nullptr, &code)
             : js_AddStream(&si, js_, &cfg, nullptr, &code);
  if (s != NATS_OK) {
    return nats_error(
        (exists ? "cannot update stream " : "cannot create stream ") + options_.stream, s, code);
  }
  // What the stream holds to now (the server may cap it), not what was asked for.
  duplicate_window_ = milliseconds(si->Config->Duplicates / kNsPerMs);
  jsStreamInfo_Destroy(si);
  const std::string dead = prefix_ + ".dead.>";
  const char* dead_subjects[] = {dead.c_str()};
  jsStreamConfig dcfg;
  jsStreamConfig_Init(&dcfg);
  dcfg.Name = dead_stream_.c_str();
  dcfg.Subjects = dead_subjects;
  dcfg.SubjectsLen = 1;
  dcfg.Storage = js_FileStorage;
  dcfg.Replicas = options_.replicas;
  dcfg.Duplicates = 3600LL * 1000 * kNsPerMs;
  s = js_GetStreamInfo(&si, js_, dead_stream_.c_str(), nullptr, &code);
  if (s == NATS_OK) {
    jsStreamInfo_Destroy(si);
    s = js_UpdateStream(&si, js_, &dcfg, nullptr, &code);
  } else if (code == JSStreamNotFoundErr) {
    s = js_AddStream(&si, js_, &dcfg, nullptr, &code);
  }
  if (s != NATS_OK) return nats_error("cannot set up stream " + dead_stream_, s, code);
  jsStreamInfo_Destroy(si);
  for (const auto& sink : options_.sinks) {
    auto c = std::make_unique<Consumer>();
    c->options = sink;
    c->token = sink_token(sink.name);
    c->durable = options_.stream + "_" + c->token;
    consumers_.push_back(std::move(c));
  }
  if (options_.deliver) {
    for (auto& c : consumers_) {
      if (auto set = setup_consumer(*c, had_messages); !set) return set;
    }
  }
  stream_ok_.store(true);
  return Ok{};
}

Status NatsStore::setup_consumer(Consumer& c, bool stream_had_messages) {
  jsErrCode code = static_cast<jsErrCode>(0);
  jsConsumerInfo* ci = nullptr;
  auto s = js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), c.durable.c_str(), nullptr, &code);
  const bool exists = s == NATS_OK;
  if (exists) jsConsumerInfo_Destroy(ci);
  if (!exists && code != JSConsumerNotFoundErr) {
    return nats_error("cannot look up consumer " + c.durable, s, code);
  }
  jsConsumerConfig cc;
  jsConsumerConfig_Init(&cc);
  cc.Durable = c.durable.c_str();
  cc.AckPolicy = js_AckExplicit;
  cc.AckWait = c.options.ack_wait.count() * kNsPerMs;
  cc.MaxDeliver = -1;  // a delivery that keeps failing becomes a dead letter of ours
  cc.MaxAckPending = c.options.max_in_flight;
  if (!exists) {
    // A sink added to a stream that already holds events starts with what comes next.
    cc.DeliverPolicy = stream_had_messages ? js_DeliverNew : js_DeliverAll;
    if (stream_had_messages) {
      log_.warn("nats: a new sink's consumer starts with the next event, not the stream's past",
                LogFields().add("consumer", c.durable));
    }
  }
  s = exists ? js_UpdateConsumer(&ci, js_, options_.stream.c_str(), &cc, nullptr, &code)
             : js_AddConsumer(&ci, js_, options_.stream.c_str(), &cc, nullptr, &code);
  if (s != NATS_OK) {
    return nats_error((exists ? "cannot update consumer " : "cannot create consumer ") + c.durable,
                      s, code);
  }
  jsConsumerInfo_Destroy(ci);
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = options_.stream.c_str();
  so.Consumer = c.durable.c_str();
  s = js_PullSubscribe(&c.sub, js_, nullptr, c.durable.c_str(), nullptr, &so, &code);
  if (s != NATS_OK) {
    c.sub = nullptr;
    return nats_error("cannot bind to consumer " + c.durable, s, code);
  }
  return Ok{};
}

Status NatsStore::discover_consumers() {
  jsConsumerInfoList* list = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  auto s = js_Consumers(&list, js_, options_.stream.c_str(), nullptr, &code);
  if (s == NATS_NOT_FOUND) return Ok{};
  if (s != NATS_OK) return nats_error("cannot list the consumers of " + options_.stream, s, code);
  const std::string lead = options_.stream + "_";
  for (int i = 0; i < list->Count; ++i) {
    const std::string name = list->List[i]->Name;
    if (!name.starts_with(lead)) continue;
    auto c = std::make_unique<Consumer>();
    c->token = name.substr(lead.size());
    c->options.name = c->token;
    c->durable = name;
    consumers_.push_back(std::move(c));
  }
  jsConsumerInfoList_Destroy(list);
  return Ok{};
}

Status NatsStore::open() {
  if (auto c = connect(); !c) return c;
  if (auto s = setup_streams(); !s) return s;
  refresh_stats();
  if (!options_.for_inspection) stats_thread_ = std::thread([this] { stats_loop(); });
  return Ok{};
}

void NatsStore::stats_loop() {
  std::unique_lock lock(stats_mu_);
  while (!stopping_) {
    stats_cv_.wait_for(lock, kStatsEvery, [this] { return stopping_; });
    if (stopping_) return;
    lock.unlock();
    refresh_stats();
    lock.lock();
  }
}

void NatsStore::refresh_stats() {
  connected_.store(natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED);
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (js_GetStreamInfo(&si, js_, options_.stream.c_str(), nullptr, &code) == NATS_OK) {
    stream_msgs_.store(si->State.Msgs);
    stream_bytes_.store(si->State.Bytes);
    jsStreamInfo_Destroy(si);
    stream_ok_.store(true);
  } else {
    stream_ok_.store(false);
  }
  if (js_GetStreamInfo(&si, js_, dead_stream_.c_str(), nullptr, &code) == NATS_OK) {
    dead_msgs_.store(si->State.Msgs);
    jsStreamInfo_Destroy(si);
  }
  std::int64_t total = 0;
  for (auto& c : consumers_) {
    jsConsumerInfo* ci = nullptr;
    if (js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), c->durable.c_str(), nullptr, &code) !=
        NATS_OK) {
      continue;
    }
    c->pending.store(static_cast<std::int64_t>(ci->NumPending));
    c->ack_pending.store(ci->NumAckPending);
    total += static_cast<std::int64_t>(ci->NumPending) + ci->NumAckPending;
    jsConsumerInfo_Destroy(ci);
  }
  pending_.store(total);
}

bool NatsStore::writable() const noexcept { return connected_.load() && stream_ok_.load(); }

std::uint64_t NatsStore::max_event_bytes() const noexcept {
  const auto payload = natsConnection_GetMaxPayload(nc_);
  return payload > kHeaderRoom ? static_cast<std::uint64_t>(payload - kHeaderRoom) : 0;
}

bool NatsStore::connected() const noexcept {
  return natsConnection_Status(nc_) == NATS_CONN_STATUS_CONNECTED;
}

void NatsStore::set_on_commit(std::function<void()> callback) {
  std::lock_guard lock(callback_mu_);
  on_commit_ = std::move(callback);
}

void NatsStore::on_disconnected(natsConnection*, void* closure) {
  auto* self = static_cast<NatsStore*>(closure);
  self->connected_.store(false);
  if (self->closing_.load()) return;
  self->log_.warn("nats: disconnected; answering 503 until a server takes events again");
}

void NatsStore::on_reconnected(natsConnection* nc, void* closure) {
  auto* self = static_cast<NatsStore*>(closure);
  self->connected_.store(true);
  char url[256] = {0};
  natsConnection_GetConnectedUrl(nc, url, sizeof url);
  self->log_.info("nats: reconnected", LogFields().add("server", url));
}

void NatsStore::on_error(natsConnection*, natsSubscription*, natsStatus err, void* closure) {
  auto* self = static_cast<NatsStore*>(closure);
  self->log_.warn("nats: asynchronous error", LogFields().add("error", natsStatus_GetText(err)));
}

Consumer* NatsStore::consumer_of(const std::string& sink) noexcept {
  for (auto& c : consumers_) {
    if (c->options.name == sink) return c.get();
  }
  return nullptr;
}

std::string NatsStore::subject_of(const NewEvent& e) const {
  std::string subject = prefix_ + ".events." + token_of(e.project_id);
  for (const auto& part : split(e.event, '.')) subject += "." + token_of(part);
  if (e.event.empty()) subject += "._";
  return subject;
}

Result<MsgPtr> NatsStore::message_of(const NewEvent& e, std::string& sinks_header) const {
  natsMsg* raw = nullptr;
  const std::string subject = subject_of(e);
  const std::string data = e.original.empty() ? std::string() : join_data(e.record, e.original);
  const std::string& body = e.original.empty() ? e.record : data;
  if (auto s = natsMsg_Create(&raw, subject.c_str(), nullptr, body.data(),
                              static_cast<int>(body.size()));
      s != NATS_OK) {
    return nats_error("cannot make a message", s);
  }
  MsgPtr msg(raw);
  if (!e.original.empty())
    natsMsgHeader_Set(raw, kRecordLength, std::to_string(e.record.size()).c_str());
  sinks_header.clear();
  for (const auto& sink : e.sinks) {
    if (!sinks_header.empty()) sinks_header += ',';
    sinks_header += sink_token(sink);
  }
  set_event_headers(raw, e.delivery_id, e.event, e.project_id, e.subscription_id, e.timestamp_ms,
                    e.received_at_ms, sinks_header);
  return msg;
}

void NatsStore::on_ack(jsCtx*, natsMsg* msg, jsPubAck* pa, jsPubAckErr* pae, void* closure) {
  auto* self = static_cast<NatsStore*>(closure);
  {
    std::lock_guard lock(self->batch_mu_);
    const auto it = self->in_flight_.find(msg);
    if (it != self->in_flight_.end()) {
      auto [batch, i] = it->second;
      PutResult& r = (*batch->results)[i];
      if (pa != nullptr) {
        r.outcome = pa->Duplicate ? PutOutcome::duplicate : PutOutcome::stored;
        if (pa->Duplicate) batch->dup_seq[i] = pa->Sequence;
        self->stream_ok_.store(true);  // /healthz follows what intake sees, at once
      } else {
        const std::string text = pae != nullptr && pae->ErrText != nullptr
                                     ? pae->ErrText
                                     : natsStatus_GetText(pae != nullptr ? pae->Err : NATS_ERR);
        // A stream at its limits (discard new) answers "maximum messages/bytes exceeded".
        r.outcome =
            text.find("maximum") != std::string::npos ? PutOutcome::full : PutOutcome::failed;
        r.error = "nats: " + text;
        if (pae != nullptr && (pae->Err == NATS_NO_RESPONDERS || pae->Err == NATS_TIMEOUT)) {
          self->stream_ok_.store(false);  // no stream leader (an election) or no server
        }
      }
      self->in_flight_.erase(it);
      if (--batch->left == 0) self->batch_cv_.notify_all();
    }
  }
  natsMsg_Destroy(msg);
}

std::vector<PutResult> NatsStore::put_batch(std::vector<NewEvent> events) {
  return publish(events);
}

std::vector<PutResult> NatsStore::publish(const std::vector<NewEvent>& events) {
  std::vector<PutResult> results(events.size());
  if (pending_.load() >= static_cast<std::int64_t>(options_.max_pending)) {
    for (auto& r : results) r = PutResult{PutOutcome::full, {}, "max pending reached"};
    return results;
  }
  if (natsConnection_Status(nc_) != NATS_CONN_STATUS_CONNECTED) {
    // No server: 503 at once rather than after --store-timeout (events queued behind a batch
    // waited two timeouts during an outage).
    for (auto& r : results) r = PutResult{PutOutcome::failed, {}, "nats: not connected"};
    return results;
  }
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  std::vector<std::string> ids(events.size());
  Batch batch;
  batch.results = &results;
  batch.dup_seq.assign(events.size(), 0);
  std::string sinks_header;
  for (std::size_t i = 0; i < events.size(); ++i) {
    ids[i] = events[i].delivery_id;
    results[i] = PutResult{PutOutcome::failed, {}, "nats: not acknowledged within the timeout"};
    auto msg = message_of(events[i], sinks_header);
    if (!msg) {
      results[i].error = msg.error().detail;
      continue;
    }
    natsMsg* raw = msg->release();
    {
      std::lock_guard lock(batch_mu_);
      in_flight_.emplace(raw, std::make_pair(&batch, i));
      ++batch.left;
    }
    jsPubOptions po;
    jsPubOptions_Init(&po);
    po.MsgId = events[i].dedup_key.c_str();
    // The library answers a publish that the server has not acknowledged by then with a timeout
    // (on_ack), and so gives its message back.
    po.MaxWait = options_.timeout.count();
    natsMsg* owned = raw;
    const auto s = js_PublishMsgAsync(js_pub_, &owned, &po);
    if (s != NATS_OK) {
      // Not taken by the library: it stays ours (owned is still set), and it failed.
      std::lock_guard lock(batch_mu_);
      if (in_flight_.erase(raw) != 0) --batch.left;
      results[i].error = nats_error("nats: cannot publish", s).detail;
      natsMsg_Destroy(owned);
    }
  }
  {
    std::unique_lock lock(batch_mu_);
    batch_cv_.wait_until(lock, deadline, [&] { return batch.left == 0; });
    if (batch.left > 0) {
      // Unanswered within --store-timeout: failed (503). A late acknowledgement finds no batch;
      // if the server did store the event, Tiledesk's retry is answered as its duplicate.
      for (auto it = in_flight_.begin(); it != in_flight_.end();) {
        it = it->second.first == &batch ? in_flight_.erase(it) : std::next(it);
      }
      batch.left = 0;
    }
  }
  bool stored_any = false;
  for (std::size_t i = 0; i < results.size(); ++i) {
    auto& r = results[i];
    if (r.outcome == PutOutcome::stored) {
      r.delivery_id = ids[i];
      stored_any = true;
    } else if (r.outcome == PutOutcome::duplicate) {
      // The first occurrence's id, from its message (a duplicate is rare: a Tiledesk retry
      // that reached another receiver, or this one after a restart).
      natsMsg* first = nullptr;
      jsErrCode code = static_cast<jsErrCode>(0);
      if (js_GetMsg(&first, js_, options_.stream.c_str(), batch.dup_seq[i], nullptr, &code) ==
          NATS_OK) {
        r.delivery_id = header(first, kDeliveryId);
        natsMsg_Destroy(first);
      }
    } else if (r.outcome == PutOutcome::failed) {
      log_.error("nats: event not stored", LogFields().add("error", r.error));
    }
  }
  if (stored_any) {
    commits_.fetch_add(1);
    std::function<void()> callback;
    {
      std::lock_guard lock(callback_mu_);
      callback = on_commit_;
    }
    if (callback) callback();
  }
  return results;
}

std::optional<Delivery> NatsStore::delivery_of(Consumer& c, natsMsg* msg) const {
  jsMsgMetaData* meta = nullptr;
  if (natsMsg_GetMetaData(&meta, msg) != NATS_OK) return std::nullopt;
  Delivery d;
  d.event_row = static_cast<std::int64_t>(meta->Sequence.Stream);
  d.attempts = static_cast<int>(header_int(msg, kAttempts)) +
               static_cast<int>(meta->NumDelivered > 0 ? meta->NumDelivered - 1 : 0);
  jsMsgMetaData_Destroy(meta);
  d.delivery_id = header(msg, kDeliveryId);
  d.sink = c.options.name;
  d.event = header(msg, kEvent);
  d.project_id = header(msg, kProject);
  d.subscription_id = header(msg, kSubscription);
  d.timestamp_ms = header_int(msg, kTimestamp);
  d.received_at_ms = header_int(msg, kReceivedAt);
  split_data(msg, d.record, d.original);
  return d;
}

Result<std::vector<Delivery>> NatsStore::due(const std::string& sink, std::int64_t,
                                             std::size_t limit) {
  Consumer* c = consumer_of(sink);
  if (c == nullptr || c->sub == nullptr) return std::vector<Delivery>{};
  std::vector<Delivery> out;
  std::size_t held = 0;
  {
    // What was handed out and is not settled yet comes first (the dispatcher skips what runs).
    std::lock_guard lock(c->mu);
    held = c->held.size();
    for (const auto& [seq, h] : c->held) {
      if (out.size() >= limit) break;
      out.push_back(h.delivery);
    }
  }
  if (held >= limit) return out;
  // Fetched without the lock: only this sink's loop thread calls due(), while its workers settle
  // (mark_batch) during the long poll.
  const int want = static_cast<int>(std::min<std::size_t>(limit - held, 4096));
  natsMsgList list{};
  jsErrCode code = static_cast<jsErrCode>(0);
  const auto s = natsSubscription_Fetch(&list, c->sub, want, kFetchWaitMs, &code);
  if (s == NATS_TIMEOUT) return out;
  if (s != NATS_OK) return nats_error("nats: cannot fetch from " + c->durable, s, code);
  std::lock_guard lock(c->mu);
  for (int i = 0; i < list.Count; ++i) {
    MsgPtr msg(list.Msgs[i]);
    list.Msgs[i] = nullptr;
    // Not due to this sink (its filter did not match, or a retry meant for another sink).
    const auto due_to = split(header(msg.get(), kSinks), ',');
    if (std::find(due_to.begin(), due_to.end(), c->token) == due_to.end()) {
      natsMsg_Ack(msg.get(), nullptr);
      continue;
    }
    auto d = delivery_of(*c, msg.get());
    if (!d) continue;  // not a JetStream message: nothing to settle
    const auto seq = static_cast<std::uint64_t>(d->event_row);
    const bool again = c->held.count(seq) != 0;
    auto& h = c->held[seq];
    h.msg = std::move(msg);  // a redelivery of what we hold: its newest delivery is settled
    h.delivery = *d;
    if (!again) out.push_back(std::move(*d));
  }
  natsMsgList_Destroy(&list);
  return out;
}

std::optional<std::int64_t> NatsStore::next_due(const std::string& sink) {
  // The server knows what is due; due() asks it with a long poll.
  Consumer* c = consumer_of(sink);
  if (c == nullptr || c->sub == nullptr) return std::nullopt;
  return now_ms();
}

Status NatsStore::dead_letter(Consumer& c, Consumer::Held& h, const Attempt& attempt) {
  natsMsg* raw = nullptr;
  const std::string subject = prefix_ + ".dead." + c.token;
  const auto& d = h.delivery;
  // A dead letter keeps the original too: `tdhook spool retry` sends it back to a forward: sink.
  const std::string data = join_data(d.record, d.original);
  if (auto s = natsMsg_Create(&raw, subject.c_str(), nullptr, data.data(),
                              static_cast<int>(data.size()));
      s != NATS_OK) {
    return nats_error("cannot make a dead letter", s);
  }
  MsgPtr msg(raw);
  if (!d.original.empty())
    natsMsgHeader_Set(raw, kRecordLength, std::to_string(d.record.size()).c_str());
  set_event_headers(raw, d.delivery_id, d.event, d.project_id, d.subscription_id, d.timestamp_ms,
                    d.received_at_ms, c.token);
  natsMsgHeader_Set(raw, kSink, header_value(c.options.name).c_str());
  natsMsgHeader_Set(raw, kError, header_value(attempt.error, kMaxErrorHeader).c_str());
  natsMsgHeader_Set(raw, kAttempts, std::to_string(attempt.number).c_str());
  natsMsgHeader_Set(raw, kEventSeq, std::to_string(d.event_row).c_str());
  natsMsgHeader_Set(raw, kDeadAt, std::to_string(attempt.finished_at_ms).c_str());
  jsPubOptions po;
  jsPubOptions_Init(&po);
  // The same dead letter published twice (its acknowledgement lost) is stored once.
  const std::string id =
      "dead:" + c.token + ":" + std::to_string(d.event_row) + ":" + std::to_string(attempt.number);
  po.MsgId = id.c_str();
  po.MaxWait = options_.timeout.count();
  jsPubAck* pa = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (auto s = js_PublishMsg(&pa, js_, raw, &po, &code); s != NATS_OK) {
    return nats_error("nats: cannot store a dead letter in " + dead_stream_, s, code);
  }
  jsPubAck_Destroy(pa);
  return Ok{};
}

Status NatsStore::mark_batch(const std::vector<Mark>& marks) {
  Status result = Ok{};
  for (const auto& m : marks) {
    Consumer* c = consumer_of(m.delivery->sink);
    if (c == nullptr) continue;
    std::lock_guard lock(c->mu);
    const auto it = c->held.find(static_cast<std::uint64_t>(m.delivery->event_row));
    if (it == c->held.end()) continue;  // settled already
    natsStatus s = NATS_OK;
    if (m.attempt.ok) {
      s = natsMsg_Ack(it->second.msg.get(), nullptr);
    } else if (m.dead) {
      if (auto dead = dead_letter(*c, it->second, m.attempt); !dead) {
        result = std::move(dead);
        continue;  // kept: the dispatcher records the outcome again
      }
      s = natsMsg_Ack(it->second.msg.get(), nullptr);
    } else {
      const std::int64_t delay = std::max<std::int64_t>(0, m.next_attempt_at_ms - now_ms());
      s = natsMsg_NakWithDelay(it->second.msg.get(), delay, nullptr);
    }
    if (s != NATS_OK) {
      result = nats_error("nats: cannot settle a delivery of " + c->durable, s);
      continue;
    }
    c->held.erase(it);
  }
  return result;
}

std::string NatsStore::metrics_text() const {
  std::ostringstream out;
  out << "# HELP tdhook_store_connected 1 while connected to a NATS server\n"
         "# TYPE tdhook_store_connected gauge\n"
      << "tdhook_store_connected " << (connected_.load() ? 1 : 0) << '\n'
      << "# HELP tdhook_store_stream_messages messages the JetStream stream holds\n"
         "# TYPE tdhook_store_stream_messages gauge\n"
      << "tdhook_store_stream_messages " << stream_msgs_.load() << '\n'
      << "# HELP tdhook_store_dead_letters messages in the dead-letter stream\n"
         "# TYPE tdhook_store_dead_letters gauge\n"
      << "tdhook_store_dead_letters " << dead_msgs_.load() << '\n'
      << "# HELP tdhook_store_consumer_pending messages a sink's consumer has not delivered yet\n"
         "# TYPE tdhook_store_consumer_pending gauge\n";
  for (const auto& c : consumers_) {
    out << "tdhook_store_consumer_pending{sink=\"" << c->token << "\"} " << c->pending.load()
        << '\n';
  }
  out << "# HELP tdhook_store_consumer_ack_pending deliveries handed out and not settled yet\n"
         "# TYPE tdhook_store_consumer_ack_pending gauge\n";
  for (const auto& c : consumers_) {
    out << "tdhook_store_consumer_ack_pending{sink=\"" << c->token << "\"} "
        << c->ack_pending.load() << '\n';
  }
  return out.str();
}

std::string NatsStore::health_json() const {
  std::ostringstream out;
  out << R"({"kind":"nats","connected":)" << (connected_.load() ? "true" : "false")
      << R"(,"stream":")" << options_.stream << R"(","stream_ok":)"
      << (stream_ok_.load() ? "true" : "false") << R"(,"replicas":)" << options_.replicas
      << R"(,"a_200_means":")" << nats_promise(options_.replicas) << '"' << R"(,"messages":)"
      << stream_msgs_.load() << R"(,"dead_letters":)" << dead_msgs_.load() << R"(,"lag":{)";
  bool first = true;
  for (const auto& c : consumers_) {
    if (!first) out << ',';
    first = false;
    out << '"' << c->token << "\":" << (c->pending.load() + c->ack_pending.load());
  }
  out << "}}";
  return out.str();
}

}  // namespace nats

std::string_view nats_promise(int replicas) noexcept {
  // nats-server 2.9 syncs to disk in the background, about once a minute
  // (nats-io/nats-server#7564).
  return replicas >= 3 ? "held by a quorum of JetStream servers, not yet synced to a disk"
                       : "held by the JetStream server process, not yet synced to a disk";
}

bool is_nats_url(std::string_view url) noexcept {
  return url.starts_with("nats://") || url.starts_with("tls://");
}

std::string nats_consumer_name(std::string_view stream, std::string_view sink) {
  return std::string(stream) + "_" + nats::sink_token(sink);
}

Result<std::unique_ptr<Store>> open_nats_store(const NatsStoreOptions& options, const Logger& log) {
  if (options.stream.empty() || options.stream.find_first_of(" \t.*>/\\") != std::string::npos) {
    return Error{ErrorCode::invalid_config,
                 "bad --stream '" + options.stream + "' (letters, digits, - and _)"};
  }
  if (options.replicas < 1 || options.replicas > 5) {
    return Error{ErrorCode::invalid_config, "--replicas must be 1 to 5"};
  }
  auto store = std::make_unique<nats::NatsStore>(options, log);
  if (auto opened = store->open(); !opened) return std::move(opened).error();
  return std::unique_ptr<Store>(std::move(store));
}

}  // namespace tdhook::receiver
