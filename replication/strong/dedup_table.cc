#include "replication/strong/dedup_table.h"

#include "replication/invariant.h"

namespace stig::replication {

DedupTable::Lookup DedupTable::lookup(const RequestId& id) const {
  auto c = clients_.find(id.client_id);
  if (c == clients_.end()) return {};
  auto s = c->second.slots.find(id.seq);
  if (s != c->second.slots.end()) {
    if (!s->second.response) return {Seen::kWaiting, nullptr};
    return {Seen::kDone, &*s->second.response};
  }
  if (id.seq < c->second.forgotten_below) return {Seen::kStale, nullptr};
  return {};
}

DedupTable::Client& DedupTable::touch(const std::string& client_id, uint64_t log_index) {
  auto [it, inserted] = clients_.try_emplace(client_id);
  Client& c = it->second;
  if (inserted) {
    c.lru = lru_.insert(lru_.end(), &*it);
  } else {
    STIG_INVARIANT(log_index >= c.last_index, "log indexes applied out of order");
    lru_.splice(lru_.end(), lru_, c.lru);
  }
  c.last_index = log_index;
  place_in_lru(c);
  return c;
}

void DedupTable::place_in_lru(Client& c) {
  // Ties (one entry touching several clients) order by client id, the same
  // on every replica and after a restore from a snapshot.
  const std::string& id = (*c.lru)->first;
  while (c.lru != lru_.begin()) {
    auto before = std::prev(c.lru);
    const ClientEntry& other = **before;
    if (other.second.last_index < c.last_index || (other.second.last_index == c.last_index && other.first < id))
      break;
    lru_.splice(before, lru_, c.lru);  // c moves in front of `before`
  }
}

void DedupTable::record_waiting(const RequestId& id, uint64_t log_index) {
  Client& c = touch(id.client_id, log_index);
  auto [slot, inserted] = c.slots.try_emplace(id.seq);
  STIG_INVARIANT(inserted, "a request waits once");
  enforce_bounds(id.client_id);
}

void DedupTable::record_done(const RequestId& id, const pb::StrongResponse& response, uint64_t log_index) {
  Client& c = touch(id.client_id, log_index);
  Slot& slot = c.slots[id.seq];
  if (slot.response) {  // cannot happen through apply(); keep the accounting exact anyway
    --c.done;
    c.bytes -= slot.bytes;
    bytes_ -= slot.bytes;
  }
  slot.response = response;
  slot.bytes = response.ByteSizeLong() + 16;
  ++c.done;
  c.bytes += slot.bytes;
  bytes_ += slot.bytes;
  while (c.done > options_.dedup_window) drop_oldest_done(c);
  enforce_bounds(id.client_id);
}

void DedupTable::drop_oldest_done(Client& c) {
  for (auto it = c.slots.begin(); it != c.slots.end(); ++it) {
    if (!it->second.response) continue;
    if (it->first >= c.forgotten_below) c.forgotten_below = it->first + 1;
    --c.done;
    c.bytes -= it->second.bytes;
    bytes_ -= it->second.bytes;
    c.slots.erase(it);
    return;
  }
}

void DedupTable::forget(const std::string& client_id) {
  auto it = clients_.find(client_id);
  lru_.erase(it->second.lru);
  bytes_ -= it->second.bytes;
  clients_.erase(it);
}

void DedupTable::enforce_bounds(const std::string& keep) {
  auto over = [&] { return clients_.size() > options_.dedup_max_clients || bytes_ > options_.dedup_max_bytes; };
  auto it = lru_.begin();
  while (over() && it != lru_.end()) {
    // A client with a request in a lock queue stays: its answer must be
    // remembered when the wait ends (lock queues bound how many such
    // clients there are).
    const std::string& id = (*it)->first;
    const Client& c = (*it)->second;
    if (id == keep || c.slots.size() > c.done) {
      ++it;
      continue;
    }
    const std::string victim = id;
    ++it;
    forget(victim);
  }
  // Only `keep` is left and it alone is too big: forget its oldest answers.
  if (bytes_ > options_.dedup_max_bytes) {
    Client& c = clients_.at(keep);
    while (bytes_ > options_.dedup_max_bytes && c.done > 0) drop_oldest_done(c);
  }
}

std::set<RequestId> DedupTable::waiting() const {
  std::set<RequestId> out;
  for (const auto& [id, c] : clients_)
    for (const auto& [seq, slot] : c.slots)
      if (!slot.response) out.insert(RequestId{id, seq});
  return out;
}

void DedupTable::to_snapshot(pb::StrongSnapshot* out) const {
  for (const auto& [id, c] : clients_) {
    auto* sc = out->add_clients();
    sc->set_client_id(id);
    sc->set_last_index(c.last_index);
    sc->set_forgotten_below(c.forgotten_below);
    for (const auto& [seq, slot] : c.slots) {
      auto* ss = sc->add_slots();
      ss->set_seq(seq);
      ss->set_waiting(!slot.response);
      if (slot.response) *ss->mutable_response() = *slot.response;
    }
  }
}

Status DedupTable::from_snapshot(const pb::StrongSnapshot& in) {
  clients_.clear();
  lru_.clear();
  bytes_ = 0;
  if (static_cast<size_t>(in.clients_size()) > options_.dedup_max_clients + options_.max_waiters_total)
    return Status::corruption("too many clients in the dedup table");
  const std::string* prev = nullptr;
  for (const auto& sc : in.clients()) {
    if (sc.client_id().empty() || sc.client_id().size() > options_.max_id_bytes)
      return Status::corruption("dedup client id size out of bounds");
    if (prev != nullptr && !(*prev < sc.client_id())) return Status::corruption("dedup clients not ascending");
    prev = &sc.client_id();
    if (sc.last_index() > in.applied_index()) return Status::corruption("dedup client active after the applied index");
    Client c;
    c.last_index = sc.last_index();
    c.forgotten_below = sc.forgotten_below();
    for (int i = 0; i < sc.slots_size(); ++i) {
      const auto& ss = sc.slots(i);
      if (i > 0 && ss.seq() <= sc.slots(i - 1).seq()) return Status::corruption("dedup slots not ascending");
      Slot slot;
      if (!ss.waiting()) {
        slot.response = ss.response();
        slot.bytes = ss.response().ByteSizeLong() + 16;
        ++c.done;
        c.bytes += slot.bytes;
      } else if (ss.has_response()) {
        return Status::corruption("waiting dedup slot with an answer");
      }
      c.slots.emplace(ss.seq(), std::move(slot));
    }
    if (c.done > options_.dedup_window) return Status::corruption("dedup window overflow");
    bytes_ += c.bytes;
    auto placed = clients_.emplace(sc.client_id(), std::move(c)).first;
    placed->second.lru = lru_.insert(lru_.end(), &*placed);
  }
  // Clients come in id order; lru_ wants (last_index, id) order.
  lru_.sort([](const ClientEntry* a, const ClientEntry* b) {
    return a->second.last_index != b->second.last_index ? a->second.last_index < b->second.last_index
                                                        : a->first < b->first;
  });
  if (bytes_ > options_.dedup_max_bytes) return Status::corruption("dedup table over its byte bound");
  return Status::ok();
}

}  // namespace stig::replication
