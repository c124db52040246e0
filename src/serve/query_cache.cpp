#include "fundus/serve/query_cache.h"

#include <random>

#include "fundus/core/strings.h"

namespace fundus {

std::string random_hex_id() {
  static thread_local std::random_device device;  // OS entropy (getrandom), not a seeded generator
  std::string id;
  for (int i = 0; i < 4; ++i) id += strprintf("%08x", unsigned(device()));
  return id;
}

QueryCache::QueryCache(size_t capacity) : capacity_(capacity ? capacity : 1) {}

std::string QueryCache::put(QueryArtefacts artefacts) {
  auto entry = std::make_shared<const QueryArtefacts>(std::move(artefacts));
  std::string id = random_hex_id();
  std::lock_guard<std::mutex> lock(mu_);
  entries_[id] = std::move(entry);
  order_.push_back(id);
  while (order_.size() > capacity_) {
    entries_.erase(order_.front());
    order_.pop_front();
  }
  return id;
}

std::shared_ptr<const QueryArtefacts> QueryCache::get(const std::string& id) const {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  return it == entries_.end() ? nullptr : it->second;
}

size_t QueryCache::size() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace fundus
