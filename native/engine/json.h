#pragma once
// A small strict JSON parser (RFC 8259) for the few JSON files the engine
// reads itself: safetensors headers and model.safetensors.index.json.
//
// Strict means: exactly one value, surrounded only by JSON whitespace (space,
// tab, LF, CR); no comments, trailing commas, single quotes, leading zeros,
// NaN/Infinity, raw control characters in strings, invalid UTF-8 or lone
// surrogates; a byte-order mark is rejected. Two deliberate limits that RFC
// 8259 §9 allows: nesting deeper than `max_depth` arrays/objects, and a
// number whose magnitude overflows a double (1e400), are errors. Objects keep
// their members in document order; a key repeated in one object is an error
// (the RFC leaves duplicates' meaning undefined, and safetensors must not
// guess which of two tensors of the same name is meant).
#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace st::json {

// what() is "at byte N: reason"; N counts from the first byte of the text
// given to parse(). Callers prefix it with the file (and say what the text
// is), e.g. "<path>: header is not valid JSON at byte 17: expected ':'".
class ParseError : public std::runtime_error {
 public:
  ParseError(size_t offset, const std::string& reason)
      : std::runtime_error("at byte " + std::to_string(offset) + ": " + reason),
        offset_(offset),
        reason_(reason) {}
  size_t offset() const { return offset_; }
  const std::string& reason() const { return reason_; }

 private:
  size_t offset_;
  std::string reason_;
};

enum class Type { Null, Bool, Number, String, Array, Object };

const char* type_name(Type type);  // "null", "a boolean", "a number", ...

struct Member;

struct Value {
  Type type = Type::Null;
  size_t offset = 0;  // byte offset of the value's first character

  bool boolean = false;
  // Numbers: `number` is the nearest double. When the literal has no
  // fraction or exponent and fits in int64, `is_integer` is true and
  // `integer` holds it exactly (so 9007199254740993 is not rounded).
  double number = 0;
  bool is_integer = false;
  int64_t integer = 0;
  std::string string;           // decoded UTF-8
  std::vector<Value> array;
  std::vector<Member> object;   // in document order, keys unique

  bool is_null() const { return type == Type::Null; }
  bool is_bool() const { return type == Type::Bool; }
  bool is_number() const { return type == Type::Number; }
  bool is_string() const { return type == Type::String; }
  bool is_array() const { return type == Type::Array; }
  bool is_object() const { return type == Type::Object; }

  // The member named `key` of an object, or nullptr (also for non-objects).
  const Value* find(std::string_view key) const;
};

struct Member {
  std::string key;
  size_t key_offset = 0;  // byte offset of the key's opening quote
  Value value;
};

constexpr int kDefaultMaxDepth = 64;

// Parses `size` bytes at `text` as one JSON value. Throws ParseError.
Value parse(const char* text, size_t size, int max_depth = kDefaultMaxDepth);
inline Value parse(std::string_view text, int max_depth = kDefaultMaxDepth) {
  return parse(text.data(), text.size(), max_depth);
}

// Writes `text` as a JSON string literal (quotes included), for messages.
std::string quote(std::string_view text);

}  // namespace st::json
