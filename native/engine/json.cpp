// Strict RFC 8259 parser: recursive descent over a byte range, with a depth
// limit so hostile input cannot exhaust the stack.
#include "engine/json.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <system_error>

namespace st::json {

const char* type_name(Type type) {
  switch (type) {
    case Type::Null: return "null";
    case Type::Bool: return "a boolean";
    case Type::Number: return "a number";
    case Type::String: return "a string";
    case Type::Array: return "an array";
    case Type::Object: return "an object";
  }
  return "?";
}

const Value* Value::find(std::string_view key) const {
  if (type != Type::Object) return nullptr;
  for (const Member& member : object)
    if (member.key == key) return &member.value;
  return nullptr;
}

namespace {

void append_utf8(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xC0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += char(0xE0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  } else {
    out += char(0xF0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3F));
    out += char(0x80 | ((cp >> 6) & 0x3F));
    out += char(0x80 | (cp & 0x3F));
  }
}

std::string describe_byte(unsigned char c) {
  char buf[32];
  if (c >= 0x20 && c < 0x7F)
    std::snprintf(buf, sizeof buf, "'%c'", c);
  else
    std::snprintf(buf, sizeof buf, "byte 0x%02X", c);
  return buf;
}

class Parser {
 public:
  Parser(const char* text, size_t size, int max_depth)
      : p_(reinterpret_cast<const unsigned char*>(text)), size_(size), max_depth_(max_depth) {}

  Value parse_document() {
    skip_ws();
    if (pos_ == size_) fail("empty input, expected a JSON value");
    Value value = parse_value(0);
    skip_ws();
    if (pos_ != size_) fail("unexpected " + describe_byte(p_[pos_]) + " after the JSON value");
    return value;
  }

 private:
  [[noreturn]] void fail(const std::string& reason) const { throw ParseError(pos_, reason); }
  [[noreturn]] void fail_at(size_t offset, const std::string& reason) const { throw ParseError(offset, reason); }

  void skip_ws() {
    while (pos_ < size_) {
      const unsigned char c = p_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void expect_more(const char* what) const {
    if (pos_ >= size_) fail(std::string("unexpected end of input, expected ") + what);
  }

  Value parse_value(int depth) {
    expect_more("a value");
    const unsigned char c = p_[pos_];
    switch (c) {
      case '{': return parse_object(depth + 1);
      case '[': return parse_array(depth + 1);
      case '"': {
        Value value;
        value.type = Type::String;
        value.offset = pos_;
        value.string = parse_string();
        return value;
      }
      case 't': return parse_literal("true", Type::Bool, true);
      case 'f': return parse_literal("false", Type::Bool, false);
      case 'n': return parse_literal("null", Type::Null, false);
      default:
        if (c == '-' || (c >= '0' && c <= '9')) return parse_number();
        fail("unexpected " + describe_byte(c) + ", expected a value");
    }
  }

  Value parse_literal(const char* word, Type type, bool boolean) {
    Value value;
    value.type = type;
    value.offset = pos_;
    value.boolean = boolean;
    for (const char* w = word; *w; ++w, ++pos_)
      if (pos_ >= size_ || p_[pos_] != static_cast<unsigned char>(*w))
        fail_at(value.offset, std::string("invalid literal, expected '") + word + "'");
    return value;
  }

  void check_depth(int depth) const {
    if (depth > max_depth_) fail("nesting deeper than " + std::to_string(max_depth_) + " levels");
  }

  Value parse_array(int depth) {
    check_depth(depth);
    Value value;
    value.type = Type::Array;
    value.offset = pos_++;
    skip_ws();
    expect_more("a value or ']'");
    if (p_[pos_] == ']') {
      ++pos_;
      return value;
    }
    for (;;) {
      skip_ws();
      value.array.push_back(parse_value(depth));
      skip_ws();
      expect_more("',' or ']'");
      const unsigned char c = p_[pos_];
      if (c == ']') {
        ++pos_;
        return value;
      }
      if (c != ',') fail("unexpected " + describe_byte(c) + ", expected ',' or ']'");
      ++pos_;
    }
  }

  Value parse_object(int depth) {
    check_depth(depth);
    Value value;
    value.type = Type::Object;
    value.offset = pos_++;
    skip_ws();
    expect_more("a key or '}'");
    if (p_[pos_] == '}') {
      ++pos_;
      return value;
    }
    for (;;) {
      skip_ws();
      expect_more("a key");
      if (p_[pos_] != '"') fail("unexpected " + describe_byte(p_[pos_]) + ", expected a string key");
      Member member;
      member.key_offset = pos_;
      member.key = parse_string();
      skip_ws();
      expect_more("':'");
      if (p_[pos_] != ':') fail("unexpected " + describe_byte(p_[pos_]) + ", expected ':'");
      ++pos_;
      skip_ws();
      member.value = parse_value(depth);
      value.object.push_back(std::move(member));
      skip_ws();
      expect_more("',' or '}'");
      const unsigned char c = p_[pos_];
      if (c == '}') {
        ++pos_;
        break;
      }
      if (c != ',') fail("unexpected " + describe_byte(c) + ", expected ',' or '}'");
      ++pos_;
    }
    check_unique_keys(value);
    return value;
  }

  void check_unique_keys(const Value& value) const {
    const auto& members = value.object;
    if (members.size() < 2) return;
    std::vector<const Member*> sorted;
    sorted.reserve(members.size());
    for (const Member& m : members) sorted.push_back(&m);
    std::sort(sorted.begin(), sorted.end(), [](const Member* a, const Member* b) {
      return a->key != b->key ? a->key < b->key : a->key_offset < b->key_offset;
    });
    for (size_t i = 1; i < sorted.size(); ++i)
      if (sorted[i]->key == sorted[i - 1]->key)
        fail_at(sorted[i]->key_offset, "duplicate key " + quote(sorted[i]->key) + " in the object at byte " +
                                           std::to_string(value.offset));
  }

  uint32_t parse_hex4() {
    if (size_ - pos_ < 4) fail("unexpected end of input in a \\u escape");
    uint32_t cp = 0;
    for (int i = 0; i < 4; ++i) {
      const unsigned char c = p_[pos_];
      uint32_t digit;
      if (c >= '0' && c <= '9') digit = c - '0';
      else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
      else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
      else fail("invalid hex digit " + describe_byte(c) + " in a \\u escape");
      cp = cp * 16 + digit;
      ++pos_;
    }
    return cp;
  }

  // At a '"'; returns the decoded string and leaves pos_ after the closing quote.
  std::string parse_string() {
    const size_t start = pos_++;
    std::string out;
    for (;;) {
      if (pos_ >= size_) fail_at(start, "unterminated string");
      const unsigned char c = p_[pos_];
      if (c == '"') {
        ++pos_;
        return out;
      }
      if (c < 0x20) fail("unescaped control character " + describe_byte(c) + " in a string");
      if (c == '\\') {
        ++pos_;
        if (pos_ >= size_) fail_at(start, "unterminated string");
        const unsigned char e = p_[pos_];
        switch (e) {
          case '"': out += '"'; ++pos_; break;
          case '\\': out += '\\'; ++pos_; break;
          case '/': out += '/'; ++pos_; break;
          case 'b': out += '\b'; ++pos_; break;
          case 'f': out += '\f'; ++pos_; break;
          case 'n': out += '\n'; ++pos_; break;
          case 'r': out += '\r'; ++pos_; break;
          case 't': out += '\t'; ++pos_; break;
          case 'u': {
            const size_t escape = pos_ - 1;
            ++pos_;
            uint32_t cp = parse_hex4();
            if (cp >= 0xDC00 && cp <= 0xDFFF) fail_at(escape, "lone low surrogate in a \\u escape");
            if (cp >= 0xD800 && cp <= 0xDBFF) {
              if (size_ - pos_ < 2 || p_[pos_] != '\\' || p_[pos_ + 1] != 'u')
                fail_at(escape, "high surrogate not followed by a \\u low surrogate");
              pos_ += 2;
              const uint32_t low = parse_hex4();
              if (low < 0xDC00 || low > 0xDFFF)
                fail_at(escape, "high surrogate not followed by a \\u low surrogate");
              cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
            }
            append_utf8(out, cp);
            break;
          }
          default: fail("invalid escape '\\" + std::string(1, char(e)) + "'");
        }
        continue;
      }
      if (c < 0x80) {
        out += char(c);
        ++pos_;
        continue;
      }
      // Raw UTF-8: validate (no overlongs, surrogates or code points > U+10FFFF).
      size_t length;
      uint32_t cp, min;
      if (c >= 0xC2 && c <= 0xDF) length = 2, cp = c & 0x1F, min = 0x80;
      else if (c >= 0xE0 && c <= 0xEF) length = 3, cp = c & 0x0F, min = 0x800;
      else if (c >= 0xF0 && c <= 0xF4) length = 4, cp = c & 0x07, min = 0x10000;
      else fail("invalid UTF-8 " + describe_byte(c) + " in a string");
      if (size_ - pos_ < length) fail("truncated UTF-8 sequence in a string");
      for (size_t i = 1; i < length; ++i) {
        const unsigned char k = p_[pos_ + i];
        if ((k & 0xC0) != 0x80) fail("invalid UTF-8 sequence in a string");
        cp = (cp << 6) | (k & 0x3F);
      }
      if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        fail("invalid UTF-8 sequence in a string");
      out.append(reinterpret_cast<const char*>(p_ + pos_), length);
      pos_ += length;
    }
  }

  Value parse_number() {
    Value value;
    value.type = Type::Number;
    value.offset = pos_;
    const size_t start = pos_;
    auto digit = [&](size_t i) { return i < size_ && p_[i] >= '0' && p_[i] <= '9'; };
    if (p_[pos_] == '-') ++pos_;
    if (!digit(pos_)) fail("invalid number: expected a digit");
    if (p_[pos_] == '0') {
      ++pos_;
      if (digit(pos_)) fail_at(start, "invalid number: leading zero");
    } else {
      while (digit(pos_)) ++pos_;
    }
    bool integral = true;
    if (pos_ < size_ && p_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (!digit(pos_)) fail("invalid number: expected a digit after '.'");
      while (digit(pos_)) ++pos_;
    }
    if (pos_ < size_ && (p_[pos_] == 'e' || p_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < size_ && (p_[pos_] == '+' || p_[pos_] == '-')) ++pos_;
      if (!digit(pos_)) fail("invalid number: expected a digit in the exponent");
      while (digit(pos_)) ++pos_;
    }
    const char* first = reinterpret_cast<const char*>(p_ + start);
    const char* last = reinterpret_cast<const char*>(p_ + pos_);
    if (integral) {
      int64_t integer = 0;
      const auto result = std::from_chars(first, last, integer);
      if (result.ec == std::errc() && result.ptr == last) {
        value.is_integer = true;
        value.integer = integer;
      }
    }
    double number = 0;
    const auto result = std::from_chars(first, last, number, std::chars_format::general);
    if (result.ec == std::errc::result_out_of_range) {
      if (magnitude_overflows(first, last)) fail_at(start, "number out of range of a double");
      number = *first == '-' ? -0.0 : 0.0;  // underflows to zero
    } else if (result.ec != std::errc() || result.ptr != last) {
      fail_at(start, "invalid number");
    }
    value.number = number;
    return value;
  }

  // Whether a syntactically valid literal that from_chars reports out of
  // range is too large (rather than too small): its decimal exponent, from
  // the first non-zero digit, is positive.
  static bool magnitude_overflows(const char* first, const char* last) {
    const char* p = first;
    if (*p == '-') ++p;
    int64_t point = 0;  // digits before the decimal point, after leading zeros
    int64_t leading = 0;
    bool seen_nonzero = false, after_point = false;
    for (; p < last && *p != 'e' && *p != 'E'; ++p) {
      if (*p == '.') {
        after_point = true;
        continue;
      }
      if (!seen_nonzero && *p == '0') {
        if (after_point) ++leading;
        continue;
      }
      seen_nonzero = true;
      if (!after_point) ++point;
    }
    if (!seen_nonzero) return false;
    int64_t exponent = 0;
    if (p < last) {
      ++p;
      bool negative = false;
      if (*p == '+' || *p == '-') negative = *p++ == '-';
      for (; p < last; ++p) {
        exponent = exponent * 10 + (*p - '0');
        if (exponent > 100000000) break;  // far beyond any double either way
      }
      if (negative) exponent = -exponent;
    }
    const int64_t decimal_exponent = exponent + (point > 0 ? point - 1 : -(leading + 1));
    return decimal_exponent > 0;
  }

  const unsigned char* p_;
  size_t size_;
  size_t pos_ = 0;
  int max_depth_;
};

}  // namespace

Value parse(const char* text, size_t size, int max_depth) {
  return Parser(text, size, max_depth).parse_document();
}

std::string quote(std::string_view text) {
  std::string out = "\"";
  for (const char ch : text) {
    const unsigned char c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", c);
          out += buf;
        } else {
          out += ch;
        }
    }
  }
  out += '"';
  return out;
}

}  // namespace st::json
