#pragma once
// ConfNode: a configuration document as a tree that remembers where each
// value and key was written, whether it came from TOML or YAML. The policy
// validator walks this one tree, so a TOML file and its YAML twin are
// checked by the same code and produce the same Policy.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace retentiond::policy {

struct SourcePos {
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
};

struct ConfNode {
  enum class Kind { map, seq, string, integer, boolean, floating, yaml_scalar, null, other };

  struct Entry;

  Kind kind = Kind::null;
  SourcePos pos;
  std::string text;        // string, yaml_scalar (raw text), other (type name)
  bool quoted = false;     // a quoted scalar (YAML "..." / '...', every TOML string)
  int quote_len = 0;       // columns between pos and the text: 1 for "x", 3 for """x"""
  std::int64_t integer = 0;
  bool boolean = false;
  std::vector<Entry> entries;  // map, in document order
  std::vector<ConfNode> items;  // seq

  const ConfNode* find(std::string_view key) const;
  std::string kind_name() const;
};

struct ConfNode::Entry {
  std::string key;
  SourcePos key_pos;
  ConfNode value;
};

// A syntax error from the TOML or YAML parser.
struct SyntaxError {
  SourcePos pos;
  std::string message;
};

struct ConfDocument {
  ConfNode root;
  std::vector<SyntaxError> errors;  // empty on success
};

enum class ConfFormat { toml, yaml };

// Picks the format from the extension (.toml, .yaml, .yml); false if none fits.
bool format_from_path(const std::filesystem::path& path, ConfFormat& out);

// Parses `text` in `format`. Syntax errors (and duplicate YAML keys) are
// reported in `errors`, never thrown.
ConfDocument parse_conf(std::string_view text, ConfFormat format);

}  // namespace retentiond::policy
