// A structure-aware mutator for the record inputs of fuzz_client and
// fuzz_peer (records.h), used as libFuzzer's LLVMFuzzerCustomMutator and
// LLVMFuzzerCustomCrossOver.
//
// Byte-level mutations mostly break what the core is worth attacking with:
// they shift the record and protobuf length prefixes, so the payload no
// longer parses. This mutator keeps the framing intact and mutates the
// messages themselves through protobuf reflection: it sets integers to
// boundary values (0, 1, 2^62, 2^64-1, 10^12, ...), swaps node ids, keys and
// whole sub-messages (contexts, key states, graves) for ones seen elsewhere in
// the input, duplicates, drops and reorders
// repeated elements (the same grave twice) and whole records, switches oneof
// branches, and descends into the bytes fields that hold messages (pushed
// KeyStates, client contexts). A quarter of the time it leaves the job to
// libFuzzer's own byte mutations, on one payload or on the whole input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <iterator>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include <google/protobuf/descriptor.h>
#include <google/protobuf/message.h>

#include "stigmergy.pb.h"
#include "tests/fuzz/records.h"

extern "C" size_t LLVMFuzzerMutate(uint8_t* data, size_t size, size_t max_size);

namespace stig::fuzz {

class RecordMutator {
 public:
  using Message = google::protobuf::Message;
  using Field = google::protobuf::FieldDescriptor;

  // `peers`: kinds 1 and 2 carry PeerMessages (fuzz_peer); otherwise every
  // payload but control is a Request (fuzz_client).
  RecordMutator(bool peers, unsigned seed) : peers_(peers), rng_(seed * 0x9E3779B97F4A7C15ull + 1) {}

  size_t mutate(uint8_t* data, size_t size, size_t max_size) {
    std::vector<Rec> recs = parse(data, size);
    const uint64_t roll = below(100);
    if (recs.empty() || roll < 10) return LLVMFuzzerMutate(data, size, max_size);
    collect_pool(recs);
    if (roll < 25) {
      bytes_mutate(recs[below(recs.size())].payload);
    } else if (roll < 75) {
      Rec& r = recs[below(recs.size())];
      if (!message_mutate(r)) bytes_mutate(r.payload);
    } else if (roll < 85) {
      Rec& r = recs[below(recs.size())];
      r.op = below(4) == 0 ? static_cast<uint8_t>(next()) : static_cast<uint8_t>((r.op & ~3u) | below(4));
    } else {
      records_mutate(recs);
    }
    const std::string out = serialize(recs);
    if (out.size() > max_size) return LLVMFuzzerMutate(data, size, max_size);
    std::memcpy(data, out.data(), out.size());
    return out.size();
  }

  // The first records of one input, then the last ones of the other.
  size_t cross_over(const uint8_t* a, size_t a_size, const uint8_t* b, size_t b_size, uint8_t* out,
                    size_t max_size) {
    std::vector<Rec> x = parse(a, a_size), y = parse(b, b_size);
    std::vector<Rec> z(x.begin(), x.begin() + static_cast<long>(below(x.size() + 1)));
    z.insert(z.end(), y.begin() + static_cast<long>(below(y.size() + 1)), y.end());
    std::string bytes = serialize(z);
    if (bytes.size() > max_size) bytes.resize(max_size);
    std::memcpy(out, bytes.data(), bytes.size());
    return bytes.size();
  }

 private:
  struct Rec {
    uint8_t op;
    std::string payload;
  };

  uint64_t next() {
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return rng_;
  }
  uint64_t below(uint64_t n) { return n == 0 ? 0 : next() % n; }

  static std::vector<Rec> parse(const uint8_t* data, size_t size) {
    std::vector<Rec> recs;
    RecordReader reader(data, size);
    Record r;
    while (reader.next(r))
      recs.push_back({static_cast<uint8_t>((r.advance_ms / kAdvanceUnitMs) << 2 | static_cast<uint8_t>(r.kind)),
                      std::string(r.payload)});
    return recs;
  }
  static std::string serialize(const std::vector<Rec>& recs) {
    std::string out;
    for (const auto& r : recs)
      append_record(out, static_cast<RecordKind>(r.op & 3), (r.op >> 2) * kAdvanceUnitMs, r.payload);
    return out;
  }

  std::unique_ptr<Message> message_for(const Rec& r) const {
    const auto kind = static_cast<RecordKind>(r.op & 3);
    if (kind == RecordKind::kControl) return nullptr;
    if (kind == RecordKind::kClient || !peers_) return std::make_unique<stigmergy::v1::Request>();
    return std::make_unique<stigmergy::v1::PeerMessage>();
  }

  // Bytes fields that carry a serialized message: mutated as that message.
  static Message* nested_prototype(const Field* f) {
    static stigmergy::v1::KeyState key_state;
    static stigmergy::v1::VersionVector context;
    const std::string& name = f->full_name();
    if (name == "stigmergy.v1.PushBatch.states") return &key_state;
    if (name == "stigmergy.v1.PutRequest.context" || name == "stigmergy.v1.DeleteRequest.context") return &context;
    return nullptr;
  }

  // Short strings of every parsed message (node ids, keys, values, contexts),
  // and its sub-messages by type.
  void collect_pool(const std::vector<Rec>& recs) {
    pool_ = {"n1", "n2", "n3", "", "k"};
    messages_.clear();
    for (const auto& r : recs) {
      auto m = message_for(r);
      if (m && m->ParseFromString(r.payload)) walk_strings(*m, 0);
    }
  }
  void walk_strings(const Message& m, int depth) {
    if (depth > 6) return;
    auto& same_type = messages_[m.GetDescriptor()->full_name()];
    if (depth > 0 && same_type.size() < 16) same_type.push_back(m.SerializeAsString());
    const auto* refl = m.GetReflection();
    std::vector<const Field*> fields;
    refl->ListFields(m, &fields);
    for (const Field* f : fields) {
      const int n = f->is_repeated() ? refl->FieldSize(m, f) : 1;
      for (int i = 0; i < n && i < 8; ++i) {
        if (f->type() == Field::TYPE_MESSAGE) {
          walk_strings(f->is_repeated() ? refl->GetRepeatedMessage(m, f, i) : refl->GetMessage(m, f), depth + 1);
        } else if (f->type() == Field::TYPE_BYTES || f->type() == Field::TYPE_STRING) {
          const std::string s = f->is_repeated() ? refl->GetRepeatedString(m, f, i) : refl->GetString(m, f);
          if (Message* proto = nested_prototype(f)) {
            std::unique_ptr<Message> inner(proto->New());
            if (inner->ParseFromString(s)) walk_strings(*inner, depth + 1);
          } else if (s.size() <= 32 && pool_.size() < 64) {
            pool_.insert(s);
          }
        }
      }
    }
  }

  void bytes_mutate(std::string& s) {
    const size_t max = s.size() * 2 + 64;
    std::string buf = s;
    buf.resize(max);
    buf.resize(LLVMFuzzerMutate(reinterpret_cast<uint8_t*>(buf.data()), s.size(), max));
    s = std::move(buf);
  }

  bool message_mutate(Rec& r) {
    auto m = message_for(r);
    if (!m || !m->ParseFromString(r.payload)) return false;
    const int rounds = 1 + static_cast<int>(below(3));
    for (int i = 0; i < rounds; ++i) mutate_message(*m, 0);
    r.payload = m->SerializeAsString();
    return true;
  }

  uint64_t interesting() {
    static constexpr uint64_t kValues[] = {0,
                                           1,
                                           2,
                                           3,
                                           15,
                                           16,
                                           4095,
                                           4096,
                                           1000000000000ull,
                                           (uint64_t{1} << 31) - 1,
                                           (uint64_t{1} << 32) - 1,
                                           (uint64_t{1} << 62) - 1,
                                           uint64_t{1} << 62,
                                           (uint64_t{1} << 63) - 1,
                                           uint64_t{1} << 63,
                                           ~uint64_t{0},
                                           ~uint64_t{0} - 1};
    return kValues[below(sizeof kValues / sizeof kValues[0])];
  }

  // Half the time: replaces `m` with a message of its type seen in the input.
  bool take_from_pool(Message& m) {
    auto it = messages_.find(m.GetDescriptor()->full_name());
    if (it == messages_.end() || it->second.empty() || below(2) == 0) return false;
    return m.ParseFromString(it->second[below(it->second.size())]);
  }

  std::string pick_string() {
    auto it = pool_.begin();
    std::advance(it, static_cast<long>(below(pool_.size())));
    return *it;
  }

  // One change somewhere in `m`: here, or (half the time) inside a field
  // that is already set.
  void mutate_message(Message& m, int depth) {
    const auto* refl = m.GetReflection();
    const auto* desc = m.GetDescriptor();
    if (desc->field_count() == 0) return;
    std::vector<const Field*> set;
    refl->ListFields(m, &set);
    if (depth < 6 && !set.empty() && below(2) == 0) {
      const Field* f = set[below(set.size())];
      if (f->type() == Field::TYPE_MESSAGE) {
        Message* inner = f->is_repeated() ? refl->MutableRepeatedMessage(&m, f, static_cast<int>(below(refl->FieldSize(m, f))))
                                          : refl->MutableMessage(&m, f);
        return mutate_message(*inner, depth + 1);
      }
      if (Message* proto = nested_prototype(f)) {
        const int i = f->is_repeated() ? static_cast<int>(below(refl->FieldSize(m, f))) : -1;
        std::unique_ptr<Message> inner(proto->New());
        if (inner->ParseFromString(i < 0 ? refl->GetString(m, f) : refl->GetRepeatedString(m, f, i))) {
          mutate_message(*inner, depth + 1);
          if (i < 0)
            refl->SetString(&m, f, inner->SerializeAsString());
          else
            refl->SetRepeatedString(&m, f, i, inner->SerializeAsString());
          return;
        }
      }
    }
    // Mostly a field already set; sometimes any field (a new oneof branch).
    const Field* f = !set.empty() && below(4) != 0 ? set[below(set.size())]
                                                    : desc->field(static_cast<int>(below(desc->field_count())));
    if (f->is_repeated())
      mutate_repeated(m, f, depth);
    else
      mutate_singular(m, f, depth);
  }

  void mutate_singular(Message& m, const Field* f, int depth) {
    const auto* refl = m.GetReflection();
    const uint64_t v = below(4) == 0 ? next() : interesting();
    switch (f->cpp_type()) {
      case Field::CPPTYPE_UINT64: refl->SetUInt64(&m, f, below(3) == 0 ? refl->GetUInt64(m, f) + 1 : v); break;
      case Field::CPPTYPE_INT64: refl->SetInt64(&m, f, static_cast<int64_t>(below(3) == 0 ? static_cast<uint64_t>(refl->GetInt64(m, f)) - 1 : v)); break;
      case Field::CPPTYPE_UINT32: refl->SetUInt32(&m, f, static_cast<uint32_t>(v)); break;
      case Field::CPPTYPE_INT32: refl->SetInt32(&m, f, static_cast<int32_t>(v)); break;
      case Field::CPPTYPE_BOOL: refl->SetBool(&m, f, !refl->GetBool(m, f)); break;
      case Field::CPPTYPE_ENUM: refl->SetEnumValue(&m, f, static_cast<int>(below(5))); break;
      case Field::CPPTYPE_STRING:
        if (below(3) == 0) {
          std::string s = refl->GetString(m, f);
          bytes_mutate(s);
          refl->SetString(&m, f, s);
        } else {
          refl->SetString(&m, f, pick_string());
        }
        break;
      case Field::CPPTYPE_MESSAGE:
        if (below(4) == 0)
          refl->ClearField(&m, f);
        else if (!take_from_pool(*refl->MutableMessage(&m, f)))
          mutate_message(*refl->MutableMessage(&m, f), depth + 1);
        break;
      default: break;
    }
  }

  void mutate_repeated(Message& m, const Field* f, int depth) {
    const auto* refl = m.GetReflection();
    const int n = refl->FieldSize(m, f);
    const uint64_t roll = below(6);
    if (n == 0 || roll == 0) {  // add an element: a copy of one, or a fresh one
      if (f->cpp_type() == Field::CPPTYPE_MESSAGE) {
        Message* added = refl->AddMessage(&m, f);
        if (take_from_pool(*added)) return;
        if (n > 0) added->CopyFrom(refl->GetRepeatedMessage(m, f, static_cast<int>(below(n))));
        else mutate_message(*added, depth + 1);
      } else if (f->cpp_type() == Field::CPPTYPE_STRING) {
        refl->AddString(&m, f, n > 0 && below(2) ? refl->GetRepeatedString(m, f, static_cast<int>(below(n))) : pick_string());
      } else if (f->cpp_type() == Field::CPPTYPE_UINT32) {
        refl->AddUInt32(&m, f, n > 0 && below(2) ? refl->GetRepeatedUInt32(m, f, static_cast<int>(below(n))) : static_cast<uint32_t>(interesting()));
      } else if (f->cpp_type() == Field::CPPTYPE_UINT64) {
        refl->AddUInt64(&m, f, n > 0 && below(2) ? refl->GetRepeatedUInt64(m, f, static_cast<int>(below(n))) : interesting());
      }
      return;
    }
    const int i = static_cast<int>(below(n));
    if (roll == 1) {  // drop the last
      refl->RemoveLast(&m, f);
    } else if (roll == 2 && n > 1) {  // reorder
      refl->SwapElements(&m, f, i, static_cast<int>(below(n)));
    } else if (f->cpp_type() == Field::CPPTYPE_MESSAGE) {
      if (!take_from_pool(*refl->MutableRepeatedMessage(&m, f, i)))
        mutate_message(*refl->MutableRepeatedMessage(&m, f, i), depth + 1);
    } else if (f->cpp_type() == Field::CPPTYPE_STRING) {
      if (Message* proto = nested_prototype(f)) {
        std::unique_ptr<Message> inner(proto->New());
        if (inner->ParseFromString(refl->GetRepeatedString(m, f, i))) {
          mutate_message(*inner, depth + 1);
          refl->SetRepeatedString(&m, f, i, inner->SerializeAsString());
          return;
        }
      }
      refl->SetRepeatedString(&m, f, i, pick_string());
    } else if (f->cpp_type() == Field::CPPTYPE_UINT32) {
      refl->SetRepeatedUInt32(&m, f, i, static_cast<uint32_t>(interesting()));
    } else if (f->cpp_type() == Field::CPPTYPE_UINT64) {
      refl->SetRepeatedUInt64(&m, f, i, interesting());
    }
  }

  void records_mutate(std::vector<Rec>& recs) {
    const size_t i = below(recs.size()), j = below(recs.size());
    switch (below(5)) {
      case 0: recs.insert(recs.begin() + static_cast<long>(j), recs[i]); break;  // repeat a record
      case 1: if (recs.size() > 1) recs.erase(recs.begin() + static_cast<long>(i)); break;
      case 2: std::swap(recs[i], recs[j]); break;
      case 3: recs.insert(recs.begin() + static_cast<long>(j), Rec{3, std::string("\x01", 1)}); break;  // restart
      default: {  // a long wait: timeouts, anti-entropy, tombstone grace
        const uint32_t ms = static_cast<uint32_t>(below(2) ? 1000 + below(10000) : 60000 + below(10000));
        recs.insert(recs.begin() + static_cast<long>(j),
                    Rec{3, std::string{'\0', static_cast<char>(ms >> 16), static_cast<char>(ms >> 8), static_cast<char>(ms)}});
      }
    }
  }

  bool peers_;
  uint64_t rng_;
  std::set<std::string> pool_;
  std::map<std::string, std::vector<std::string>> messages_;  // type name -> serialized
};

}  // namespace stig::fuzz
