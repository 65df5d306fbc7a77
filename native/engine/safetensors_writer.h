#pragma once
// Writing safetensors files a tensor at a time, sharded by size the way
// transformers' save_pretrained shards: <base>.safetensors when everything
// fits in one shard, else <base>-00001-of-0000N.safetensors ... with
// <base>.safetensors.index.json ({"metadata": {"total_size": bytes},
// "weight_map": {tensor: file}}). Values come from a callback in chunks, so
// the weights may live in any backend's memory; at most one write buffer is
// held. Every file is fsynced before the call returns, then the directory.
#include <cstdint>
#include <functional>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "engine/safetensors.h"

namespace st {

// "<path>: cannot write: No space left on device", and the like.
class WriteError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct TensorToWrite {
  std::string name;
  std::vector<int64_t> shape;
  DType dtype = DType::F32;  // F32 or BF16 in the file
  // Fills out[0, count) with the fp32 values of elements [first, first + count).
  std::function<void(int64_t first, int64_t count, float* out)> read;
  int64_t numel() const;
  int64_t bytes() const { return numel() * int64_t(dtype_size(dtype)); }
};

struct SafetensorsWriteOptions {
  // A shard closes before the tensor that would take it past this size; a
  // tensor larger than it gets a shard of its own (as huggingface_hub splits).
  int64_t max_shard_bytes = 5'000'000'000;
  // The one write buffer: conversion and write() go through it in chunks.
  int64_t buffer_bytes = int64_t(256) << 20;
  std::map<std::string, std::string> metadata = {{"format", "pt"}};
};

struct WrittenSet {
  std::vector<std::string> files;  // file names inside the directory, the index last when there is one
  int64_t total_size = 0;          // tensor data bytes
};

// Writes `tensors` (in this order) into `dir`, which must exist. Throws
// WriteError naming the file, or std::invalid_argument naming the tensor.
WrittenSet write_safetensors_set(const std::string& dir, const std::string& base,
                                 const std::vector<TensorToWrite>& tensors, const SafetensorsWriteOptions& options);

// float32 -> bfloat16 bits, rounding to nearest even as torch's .to(torch.bfloat16)
// does (a NaN stays a quiet NaN of the same sign).
uint16_t f32_to_bf16_bits(float value);

void fsync_directory(const std::string& dir);

}  // namespace st
