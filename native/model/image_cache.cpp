#include "model/image_cache.h"

#include <atomic>
#include <cstring>
#include <iterator>

namespace st::model {
namespace {

// The splitmix64 finaliser: every input bit reaches every output bit.
uint64_t mix(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t rotl(uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }

std::atomic<int64_t> hits{0};

}  // namespace

int64_t image_cache_hits() { return hits.load(); }
void reset_image_cache_hits() { hits.store(0); }

ImageKey image_key(const float* pixels, int64_t values, const GridThw& grid) {
  // Two independent multiply-rotate lanes over the pixels' bits, 8 bytes at a time.
  ImageKey key;
  key.grid = grid;
  key.values = values;
  uint64_t a = 0x9e3779b97f4a7c15ULL ^ uint64_t(values), b = 0xc2b2ae3d27d4eb4fULL + uint64_t(values);
  const unsigned char* bytes = reinterpret_cast<const unsigned char*>(pixels);
  const int64_t n = values * int64_t(sizeof(float));
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, bytes + i, 8);
    a = rotl(a ^ (word * 0x87c37b91114253d5ULL), 31) * 0x4cf5ad432745937fULL;
    b = rotl(b + (word ^ 0x52dce729da3ed7f9ULL), 29) * 0x9e3779b97f4a7c15ULL + a;
  }
  if (i < n) {
    uint64_t word = 0;
    std::memcpy(&word, bytes + i, size_t(n - i));
    a ^= mix(word);
    b += mix(word ^ a);
  }
  for (int64_t g : grid) {
    a = mix(a ^ uint64_t(g));
    b = mix(b + uint64_t(g));
  }
  key.hash[0] = mix(a ^ rotl(b, 17));
  key.hash[1] = mix(b ^ rotl(a, 41));
  return key;
}

const DeviceArray* ImageFeatureCache::find(const ImageKey& key, int64_t weights_version) {
  if (weights_version != version_) {
    clear();
    version_ = weights_version;
  }
  auto it = entries_.find(key);
  if (it == entries_.end()) return nullptr;
  it->second.last_use = ++clock_;
  ++hits;
  return &it->second.features;
}

void ImageFeatureCache::insert(const ImageKey& key, int64_t weights_version, DeviceArray features) {
  if (weights_version != version_) {
    clear();
    version_ = weights_version;
  }
  const int64_t size = features.bytes();
  if (size > max_bytes_ || entries_.count(key)) return;
  while (bytes_ + size > max_bytes_) {
    auto oldest = entries_.begin();
    for (auto it = std::next(entries_.begin()); it != entries_.end(); ++it)
      if (it->second.last_use < oldest->second.last_use) oldest = it;
    bytes_ -= oldest->second.features.bytes();
    entries_.erase(oldest);
  }
  bytes_ += size;
  entries_.emplace(key, Entry{std::move(features), ++clock_});
}

void ImageFeatureCache::clear() {
  entries_.clear();
  bytes_ = 0;
}

}  // namespace st::model
