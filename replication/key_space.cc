#include "replication/key_space.h"

#include "replication/replica.h"

namespace stig::replication {

void apply_persist(std::map<std::string, std::string>& store, const Persist& write) {
  if (!write.erase) {
    store[write.key] = write.value;
  } else if (write.range_end.empty()) {
    store.erase(write.key);
  } else if (write.key < write.range_end) {
    store.erase(store.lower_bound(write.key), store.lower_bound(write.range_end));
  }
}

}  // namespace stig::replication
