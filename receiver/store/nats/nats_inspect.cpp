// What `tdhook spool --store nats://...` asks of the JetStream store: list, show, counts,
// retry and purge, read from the event stream, the consumers' acknowledgement floors and the
// dead-letter stream. A delivery above its consumer's floor is listed as pending (deliveries
// acknowledged out of order, as concurrent exec runs leave them, are not told apart).
#include <algorithm>
#include <map>
#include <set>

#include "store/nats/nats_store_impl.hpp"
#include "tdhook/pattern.hpp"

namespace tdhook::receiver::nats {
namespace {

// How long a scan waits for the next message before it gives up on a silent server.
constexpr std::int64_t kScanWaitMs = 5000;

std::vector<std::string> sink_tokens(natsMsg* msg) {
  std::vector<std::string> out;
  const std::string list = header(msg, kSinks);
  std::size_t start = 0;
  while (start < list.size()) {
    const auto comma = list.find(',', start);
    const auto end = comma == std::string::npos ? list.size() : comma;
    if (end > start) out.push_back(list.substr(start, end - start));
    start = end + 1;
  }
  return out;
}

}  // namespace

Status NatsStore::scan(const std::string& stream, const std::string& filter, bool with_data,
                       const std::function<bool(natsMsg*, std::uint64_t)>& visit) {
  jsStreamInfo* si = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  if (auto s = js_GetStreamInfo(&si, js_, stream.c_str(), nullptr, &code); s != NATS_OK) {
    return nats_error("cannot read stream " + stream, s, code);
  }
  const std::uint64_t messages = si->State.Msgs;
  jsStreamInfo_Destroy(si);
  if (messages == 0) return Ok{};
  jsSubOptions so;
  jsSubOptions_Init(&so);
  so.Stream = stream.c_str();
  so.Ordered = true;
  so.Config.HeadersOnly = !with_data;
  so.Config.DeliverPolicy = js_DeliverAll;
  natsSubscription* sub = nullptr;
  if (auto s = js_SubscribeSync(&sub, js_, filter.c_str(), nullptr, &so, &code); s != NATS_OK) {
    return nats_error("cannot read stream " + stream, s, code);
  }
  Status result = Ok{};
  for (;;) {
    natsMsg* raw = nullptr;
    const auto s = natsSubscription_NextMsg(&raw, sub, kScanWaitMs);
    if (s == NATS_TIMEOUT) break;  // nothing (more) matches the filter
    if (s != NATS_OK) {
      result = nats_error("cannot read stream " + stream, s);
      break;
    }
    MsgPtr msg(raw);
    jsMsgMetaData* meta = nullptr;
    if (natsMsg_GetMetaData(&meta, raw) != NATS_OK) continue;
    const std::uint64_t seq = meta->Sequence.Stream;
    const std::uint64_t left = meta->NumPending;
    jsMsgMetaData_Destroy(meta);
    if (!visit(raw, seq) || left == 0) break;
  }
  natsSubscription_Unsubscribe(sub);
  natsSubscription_Destroy(sub);
  return result;
}

Result<std::vector<NatsStore::FloorInfo>> NatsStore::floors(
    const std::optional<std::string>& sink) {
  std::vector<FloorInfo> out;
  for (const auto& c : consumers_) {
    if (sink && c->options.name != *sink && c->token != *sink) continue;
    jsConsumerInfo* ci = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (auto s = js_GetConsumerInfo(&ci, js_, options_.stream.c_str(), c->durable.c_str(), nullptr,
                                    &code);
        s != NATS_OK) {
      return nats_error("cannot read consumer " + c->durable, s, code);
    }
    out.push_back(FloorInfo{c->token, ci->AckFloor.Stream,
                            static_cast<std::int64_t>(ci->NumPending) + ci->NumAckPending,
                            static_cast<std::int64_t>(ci->AckFloor.Consumer)});
    jsConsumerInfo_Destroy(ci);
  }
  return out;
}

DeliveryInfo NatsStore::info_of(natsMsg* msg, const std::string& sink, DeliveryState state) const {
  DeliveryInfo d;
  d.delivery_id = header(msg, kDeliveryId);
  d.sink = sink;
  d.event = header(msg, kEvent);
  d.project_id = header(msg, kProject);
  d.timestamp_ms = header_int(msg, kTimestamp);
  d.received_at_ms = header_int(msg, kReceivedAt);
  d.state = state;
  d.attempts = static_cast<int>(header_int(msg, kAttempts));
  d.last_error = header(msg, kError);
  if (state == DeliveryState::dead) d.next_attempt_at_ms = header_int(msg, kDeadAt);
  return d;
}

Result<std::vector<DeliveryInfo>> NatsStore::list(const ListFilter& filter) {
  auto wanted = ListMatcher::make(filter);
  if (!wanted) return std::move(wanted).error();
  const std::size_t limit = wanted->limit();
  // A (delivery, sink) has one row: dead while in the dead-letter stream, else as its newest
  // message says (a dead letter sent back by `retry` is a newer message than the event).
  std::vector<DeliveryInfo> out;
  std::set<std::pair<std::string, std::string>> dead;
  auto s = scan(dead_stream_, prefix_ + ".dead.>", false, [&](natsMsg* m, std::uint64_t) {
    auto info = info_of(m, header(m, kSinks), DeliveryState::dead);
    dead.emplace(info.delivery_id, info.sink);
    if ((*wanted)(info)) out.push_back(std::move(info));
    return true;
  });
  if (!s) return std::move(s).error();
  if (!filter.state || *filter.state != DeliveryState::dead) {
    auto fl = floors(filter.sink);
    if (!fl) return std::move(fl).error();
    std::map<std::pair<std::string, std::string>, DeliveryInfo> newest;
    std::vector<std::pair<std::string, std::string>> order;
    s = scan(options_.stream, prefix_ + ".>", false, [&](natsMsg* m, std::uint64_t seq) {
      for (const auto& token : sink_tokens(m)) {
        const auto f = std::find_if(fl->begin(), fl->end(),
                                    [&](const FloorInfo& x) { return x.sink == token; });
        if (f == fl->end()) continue;
        auto info = info_of(
            m, token, seq <= f->ack_floor ? DeliveryState::delivered : DeliveryState::pending);
        auto key = std::make_pair(info.delivery_id, token);
        if (dead.count(key) != 0) continue;
        if (newest.count(key) == 0) order.push_back(key);
        newest[key] = std::move(info);
      }
      return true;
    });
    if (!s) return std::move(s).error();
    for (const auto& key : order) {
      if ((*wanted)(newest[key])) out.push_back(std::move(newest[key]));
    }
  }
  std::stable_sort(out.begin(), out.end(), [&filter](const DeliveryInfo& a, const DeliveryInfo& b) {
    return filter.newest_first ? a.received_at_ms > b.received_at_ms
                               : a.received_at_ms < b.received_at_ms;
  });
  if (out.size() > limit) out.resize(limit);
  return out;
}

Result<Details> NatsStore::show(const std::string& delivery_id) {
  Details details;
  std::optional<std::uint64_t> event_seq;
  auto s = scan(options_.stream, prefix_ + ".>", false, [&](natsMsg* m, std::uint64_t seq) {
    if (header(m, kDeliveryId) != delivery_id) return true;
    if (!event_seq) event_seq = seq;
    return true;
  });
  if (!s) return std::move(s).error();
  std::set<std::string> dead_sinks;
  s = scan(dead_stream_, prefix_ + ".dead.>", true, [&](natsMsg* m, std::uint64_t) {
    if (header(m, kDeliveryId) != delivery_id) return true;
    auto info = info_of(m, header(m, kSinks), DeliveryState::dead);
    dead_sinks.insert(info.sink);
    if (details.record.empty()) split_data(m, details.record, details.original);
    Attempt a;
    a.number = info.attempts;
    a.finished_at_ms = info.next_attempt_at_ms;
    a.error = info.last_error;
    details.attempts.emplace_back(info.sink, a);
    details.deliveries.push_back(std::move(info));
    return true;
  });
  if (!s) return std::move(s).error();
  if (!event_seq && details.deliveries.empty()) return not_found_error(delivery_id);
  if (event_seq) {
    natsMsg* raw = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (auto g = js_GetMsg(&raw, js_, options_.stream.c_str(), *event_seq, nullptr, &code);
        g != NATS_OK) {
      return nats_error("cannot read event " + std::to_string(*event_seq), g, code);
    }
    MsgPtr msg(raw);
    split_data(raw, details.record, details.original);
    auto fl = floors(std::nullopt);
    if (!fl) return std::move(fl).error();
    for (const auto& token : sink_tokens(raw)) {
      if (dead_sinks.count(token) != 0) continue;
      const auto f =
          std::find_if(fl->begin(), fl->end(), [&](const FloorInfo& x) { return x.sink == token; });
      const auto state = f != fl->end() && *event_seq <= f->ack_floor ? DeliveryState::delivered
                                                                      : DeliveryState::pending;
      details.deliveries.push_back(info_of(raw, token, state));
    }
  }
  std::sort(details.deliveries.begin(), details.deliveries.end(),
            [](const DeliveryInfo& a, const DeliveryInfo& b) { return a.sink < b.sink; });
  return details;
}

Result<StoreCounts> NatsStore::counts(const std::optional<std::string>& sink) {
  StoreCounts out;
  auto fl = floors(sink);
  if (!fl) return std::move(fl).error();
  for (const auto& f : *fl) {
    out.pending += f.pending;
    out.delivered += f.acked;
  }
  auto s = scan(dead_stream_, prefix_ + ".dead.>", false, [&](natsMsg* m, std::uint64_t) {
    if (!sink || header(m, kSinks) == *sink || header(m, kSink) == *sink) ++out.dead;
    return true;
  });
  if (!s) return std::move(s).error();
  return out;
}

Result<std::int64_t> NatsStore::retry(const std::optional<std::string>& delivery_id,
                                      bool all_dead) {
  if (!delivery_id && !all_dead) {
    return Error{ErrorCode::invalid_input, "retry needs a delivery id or all dead deliveries"};
  }
  std::vector<std::uint64_t> seqs;
  auto s = scan(dead_stream_, prefix_ + ".dead.>", false, [&](natsMsg* m, std::uint64_t seq) {
    if (all_dead || header(m, kDeliveryId) == *delivery_id) seqs.push_back(seq);
    return true;
  });
  if (!s) return std::move(s).error();
  std::int64_t moved = 0;
  for (const auto seq : seqs) {
    natsMsg* raw = nullptr;
    jsErrCode code = static_cast<jsErrCode>(0);
    if (auto g = js_GetMsg(&raw, js_, dead_stream_.c_str(), seq, nullptr, &code); g != NATS_OK) {
      return nats_error("cannot read dead letter " + std::to_string(seq), g, code);
    }
    MsgPtr dead(raw);
    const std::string token = header(raw, kSinks);
    const std::string subject = prefix_ + ".retry." + token;
    natsMsg* again = nullptr;
    if (auto c = natsMsg_Create(&again, subject.c_str(), nullptr, natsMsg_GetData(raw),
                                natsMsg_GetDataLength(raw));
        c != NATS_OK) {
      return nats_error("cannot make a message", c);
    }
    MsgPtr msg(again);
    for (const char* name : {kDeliveryId, kEvent, kProject, kSubscription, kTimestamp, kReceivedAt,
                             kSinks, kAttempts}) {
      natsMsgHeader_Set(again, name, header(raw, name).c_str());
    }
    // The data goes back as it is: the record, and the original after it if there is one.
    if (const auto length = header(raw, kRecordLength); !length.empty())
      natsMsgHeader_Set(again, kRecordLength, length.c_str());
    jsPubOptions po;
    jsPubOptions_Init(&po);
    const std::string id = "retry:" + dead_stream_ + ":" + std::to_string(seq);
    po.MsgId = id.c_str();
    jsPubAck* pa = nullptr;
    if (auto p = js_PublishMsg(&pa, js_, again, &po, &code); p != NATS_OK) {
      return nats_error("cannot send a dead letter back to " + options_.stream, p, code);
    }
    jsPubAck_Destroy(pa);
    // Sent back, then removed: a crash in between leaves it dead as well as due (delivered
    // once more, never lost).
    if (auto d = js_DeleteMsg(js_, dead_stream_.c_str(), seq, nullptr, &code); d != NATS_OK) {
      return nats_error("cannot remove dead letter " + std::to_string(seq), d, code);
    }
    ++moved;
  }
  if (moved == 0 && delivery_id) {
    auto shown = show(*delivery_id);
    if (!shown) return std::move(shown).error();
  }
  return moved;
}

Result<std::int64_t> NatsStore::purge_delivered(std::int64_t older_than_ms) {
  // Every consumer of the stream counts, ours or not: nothing a sink still waits for goes.
  jsConsumerInfoList* list = nullptr;
  jsErrCode code = static_cast<jsErrCode>(0);
  std::uint64_t floor = UINT64_MAX;
  if (auto s = js_Consumers(&list, js_, options_.stream.c_str(), nullptr, &code); s == NATS_OK) {
    for (int i = 0; i < list->Count; ++i) floor = std::min(floor, list->List[i]->AckFloor.Stream);
    jsConsumerInfoList_Destroy(list);
  } else if (s != NATS_NOT_FOUND) {
    return nats_error("cannot list the consumers of " + options_.stream, s, code);
  }
  // The first message that must stay: past every floor, or received after the cut.
  std::uint64_t keep_from = 0;
  std::int64_t removed = 0;
  auto s = scan(options_.stream, prefix_ + ".>", false, [&](natsMsg* m, std::uint64_t seq) {
    keep_from = seq + 1;  // what comes after the scan stays too
    if (seq > floor || header_int(m, kReceivedAt) >= older_than_ms) {
      keep_from = seq;
      return false;
    }
    ++removed;
    return true;
  });
  if (!s) return std::move(s).error();
  if (removed == 0) return std::int64_t{0};
  jsOptions jo;
  jsOptions_Init(&jo);
  jo.Stream.Purge.Sequence = keep_from;  // up to, not including
  if (auto p = js_PurgeStream(js_, options_.stream.c_str(), &jo, &code); p != NATS_OK) {
    return nats_error("cannot purge " + options_.stream, p, code);
  }
  return removed;
}

}  // namespace tdhook::receiver::nats
