#pragma once
// Vision-tower features of single images, kept in backend memory for the
// weights they were computed with. In a GRPO step generation, old log-probs
// (and any forward) read the same images at the same weights: with this
// cache the tower runs once per image per weight version. An entry is found
// by the image's content (a 128-bit hash of its pixels, with its grid), so
// the caller's copies of an image all hit the same entry.
#include <cstdint>
#include <unordered_map>

#include "backend/backend.h"
#include "model/vision_layout.h"

namespace st::model {

struct ImageKey {
  uint64_t hash[2] = {0, 0};
  GridThw grid{};
  int64_t values = 0;  // pixel values of the image
  bool operator==(const ImageKey& o) const {
    return hash[0] == o.hash[0] && hash[1] == o.hash[1] && grid == o.grid && values == o.values;
  }
};

// pixels: host [values]
ImageKey image_key(const float* pixels, int64_t values, const GridThw& grid);

// Lookups that found their features, process-wide since the last reset.
int64_t image_cache_hits();
void reset_image_cache_hits();

class ImageFeatureCache {
 public:
  // At most max_bytes of features are held; 0 disables the cache.
  explicit ImageFeatureCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // The features of `key` computed at `weights_version`, or null. A newer
  // version drops every entry of the older ones first.
  const DeviceArray* find(const ImageKey& key, int64_t weights_version);
  // Keeps `features` ([tokens, out_hidden]) for `key`, dropping the least
  // recently used entries to stay within the bytes; an image larger than
  // the whole budget is not kept.
  void insert(const ImageKey& key, int64_t weights_version, DeviceArray features);
  // Drops every entry at once (the weights changed).
  void clear();

  int64_t bytes() const { return bytes_; }
  int64_t max_bytes() const { return max_bytes_; }
  size_t entries() const { return entries_.size(); }

 private:
  struct KeyHash {
    size_t operator()(const ImageKey& k) const { return size_t(k.hash[0]); }
  };
  struct Entry {
    DeviceArray features;
    int64_t last_use = 0;
  };
  int64_t max_bytes_;
  int64_t bytes_ = 0;
  int64_t version_ = 0;
  int64_t clock_ = 0;
  std::unordered_map<ImageKey, Entry, KeyHash> entries_;
};

}  // namespace st::model
