#include "lib/policy/conf_tree.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cstdio>
#include <set>
#include <tuple>
#include <utility>
#include <toml++/toml.h>

namespace retentiond::policy {

const ConfNode* ConfNode::find(std::string_view key) const {
  for (const auto& e : entries) {
    if (e.key == key) return &e.value;
  }
  return nullptr;
}

std::string ConfNode::kind_name() const {
  switch (kind) {
    case Kind::map: return "a table";
    case Kind::seq: return "an array";
    case Kind::string: return "a string";
    case Kind::integer: return "an integer";
    case Kind::boolean: return "a boolean";
    case Kind::floating: return "a floating-point number";
    case Kind::yaml_scalar: return "a scalar";
    case Kind::null: return "nothing (null)";
    case Kind::other: return text;
  }
  return "?";
}

bool format_from_path(const std::filesystem::path& path, ConfFormat& out) {
  const auto ext = path.extension().string();
  if (ext == ".toml") {
    out = ConfFormat::toml;
    return true;
  }
  if (ext == ".yaml" || ext == ".yml") {
    out = ConfFormat::yaml;
    return true;
  }
  return false;
}

namespace {

SourcePos pos_of(const toml::source_region& r) {
  return SourcePos{static_cast<int>(r.begin.line), static_cast<int>(r.begin.column)};
}

// The source lines, to tell "x" from """x""" (toml++ does not say).
struct SourceLines {
  std::vector<std::string_view> lines;
  explicit SourceLines(std::string_view text) {
    std::size_t start = 0;
    for (std::size_t i = 0; i <= text.size(); ++i) {
      if (i == text.size() || text[i] == '\n') {
        lines.push_back(text.substr(start, i - start));
        start = i + 1;
      }
    }
  }
  int quote_len(SourcePos p) const {
    if (p.line < 1 || static_cast<std::size_t>(p.line) > lines.size() || p.column < 1) return 1;
    const auto line = lines[static_cast<std::size_t>(p.line - 1)];
    const auto at = static_cast<std::size_t>(p.column - 1);
    return line.substr(at, 3) == "\"\"\"" || line.substr(at, 3) == "'''" ? 3 : 1;
  }
};

ConfNode from_toml(const toml::node& n, const SourceLines& src) {
  ConfNode out;
  out.pos = pos_of(n.source());
  if (const auto* t = n.as_table()) {
    out.kind = ConfNode::Kind::map;
    for (const auto& [k, v] : *t) {
      out.entries.push_back({std::string(k.str()), pos_of(k.source()), from_toml(v, src)});
    }
    // toml++ keeps tables sorted by key; restore the file's order, which
    // YAML keeps, so both formats give the same Policy.
    std::stable_sort(out.entries.begin(), out.entries.end(), [](const ConfNode::Entry& a, const ConfNode::Entry& b) {
      return std::pair(a.key_pos.line, a.key_pos.column) < std::pair(b.key_pos.line, b.key_pos.column);
    });
  } else if (const auto* a = n.as_array()) {
    out.kind = ConfNode::Kind::seq;
    for (const auto& v : *a) out.items.push_back(from_toml(v, src));
  } else if (const auto* s = n.as_string()) {
    out.kind = ConfNode::Kind::string;
    out.text = s->get();
    out.quoted = true;
    out.quote_len = src.quote_len(out.pos);
  } else if (const auto* i = n.as_integer()) {
    out.kind = ConfNode::Kind::integer;
    out.integer = i->get();
  } else if (const auto* b = n.as_boolean()) {
    out.kind = ConfNode::Kind::boolean;
    out.boolean = b->get();
  } else if (n.is_floating_point()) {
    out.kind = ConfNode::Kind::floating;
  } else {
    out.kind = ConfNode::Kind::other;
    out.text = "a TOML date or time (write times as quoted strings)";
  }
  return out;
}

SourcePos pos_of(const YAML::Mark& m) {
  if (m.is_null()) return {};
  return SourcePos{m.line + 1, m.column + 1};
}

// Aliases make a YAML document a graph: `&a {x: *a}` is a cycle, and ten
// aliases of ten aliases of ... a billion values. The tree built from it is
// bounded in depth and size (far beyond any policy), so neither overflows the
// stack nor fills the memory.
constexpr int kMaxYamlDepth = 64;
constexpr std::size_t kMaxYamlValues = 100000;

struct YamlBudget {
  int depth = 0;
  std::size_t values = 0;
  bool exceeded = false;
};

ConfNode from_yaml(const YAML::Node& n, std::vector<SyntaxError>& errors, YamlBudget& budget) {
  ConfNode out;
  out.pos = pos_of(n.Mark());
  if (budget.exceeded) return out;
  if (++budget.values > kMaxYamlValues) {
    budget.exceeded = true;
    errors.push_back({out.pos, "more than " + std::to_string(kMaxYamlValues) + " values (do aliases expand too much?)"});
    return out;
  }
  if (budget.depth >= kMaxYamlDepth) {
    budget.exceeded = true;
    errors.push_back({out.pos, "nested deeper than " + std::to_string(kMaxYamlDepth) +
                                   " levels (is an alias inside its own anchor?)"});
    return out;
  }
  ++budget.depth;
  switch (n.Type()) {
    case YAML::NodeType::Map: {
      out.kind = ConfNode::Kind::map;
      std::set<std::string> seen;
      for (const auto& kv : n) {
        if (!kv.first.IsScalar()) {
          errors.push_back({pos_of(kv.first.Mark()), "a mapping key must be a plain string"});
          continue;
        }
        const auto key = kv.first.Scalar();
        if (!seen.insert(key).second) {
          errors.push_back({pos_of(kv.first.Mark()), "duplicate key '" + key + "'"});
          continue;
        }
        out.entries.push_back({key, pos_of(kv.first.Mark()), from_yaml(kv.second, errors, budget)});
      }
      break;
    }
    case YAML::NodeType::Sequence:
      out.kind = ConfNode::Kind::seq;
      for (const auto& item : n) out.items.push_back(from_yaml(item, errors, budget));
      break;
    case YAML::NodeType::Scalar:
      out.kind = ConfNode::Kind::yaml_scalar;
      out.text = n.Scalar();
      // yaml-cpp tags quoted scalars with the non-specific tag "!".
      out.quoted = n.Tag() == "!";
      out.quote_len = out.quoted ? 1 : 0;
      break;
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      out.kind = ConfNode::Kind::null;
      break;
  }
  --budget.depth;
  return out;
}

// Offset of the first byte that does not start a well-formed UTF-8 sequence
// (RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF), or
// npos. The same rule as nlohmann::json's, which hashes the policy.
std::size_t invalid_utf8_at(std::string_view text) {
  const auto byte = [&](std::size_t i) { return static_cast<unsigned char>(text[i]); };
  std::size_t i = 0;
  while (i < text.size()) {
    const unsigned char c = byte(i);
    if (c < 0x80) {
      ++i;
      continue;
    }
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;  // the range of the second byte
    if (c >= 0xC2 && c <= 0xDF) len = 2;
    else if (c == 0xE0) { len = 3; lo = 0xA0; }
    else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) len = 3;
    else if (c == 0xED) { len = 3; hi = 0x9F; }
    else if (c == 0xF0) { len = 4; lo = 0x90; }
    else if (c >= 0xF1 && c <= 0xF3) len = 4;
    else if (c == 0xF4) { len = 4; hi = 0x8F; }
    else return i;
    if (i + len > text.size() || byte(i + 1) < lo || byte(i + 1) > hi) return i;
    for (std::size_t k = 2; k < len; ++k) {
      if (byte(i + k) < 0x80 || byte(i + k) > 0xBF) return i;
    }
    i += len;
  }
  return std::string_view::npos;
}

}  // namespace

ConfDocument parse_conf(std::string_view text, ConfFormat format) {
  ConfDocument doc;
  // Both formats are UTF-8 by their specs; yaml-cpp does not check, and a
  // byte that is not UTF-8 would make the policy's hash (a JSON dump) throw.
  if (const std::size_t bad = invalid_utf8_at(text); bad != std::string_view::npos) {
    // The column counts characters: what comes before `bad` is valid UTF-8.
    const std::size_t newline = text.substr(0, bad).rfind('\n');
    const auto from = text.begin() + static_cast<std::ptrdiff_t>(newline == std::string_view::npos ? 0 : newline + 1);
    const auto column = std::count_if(from, text.begin() + static_cast<std::ptrdiff_t>(bad),
                                      [](char ch) { return (static_cast<unsigned char>(ch) & 0xC0) != 0x80; });
    const auto line = std::count(text.begin(), text.begin() + static_cast<std::ptrdiff_t>(bad), '\n');
    char hex[8];
    std::snprintf(hex, sizeof hex, "0x%02X", static_cast<unsigned>(static_cast<unsigned char>(text[bad])));
    doc.errors.push_back({SourcePos{static_cast<int>(line) + 1, static_cast<int>(column) + 1},
                          std::string("not valid UTF-8 (byte ") + hex + "): the policy file must be UTF-8"});
    return doc;
  }
  if (format == ConfFormat::toml) {
    try {
      const toml::table table = toml::parse(text);
      doc.root = from_toml(table, SourceLines(text));
      doc.root.pos = SourcePos{1, 1};
    } catch (const toml::parse_error& e) {
      doc.errors.push_back({pos_of(e.source()), std::string(e.description())});
    }
    return doc;
  }
  try {
    const YAML::Node root = YAML::Load(std::string(text));
    YamlBudget budget;
    doc.root = from_yaml(root, doc.errors, budget);
    // An alias visits its anchor's nodes again: report each error once, and
    // in file order, as the validator does.
    const auto key = [](const SyntaxError& e) { return std::tie(e.pos.line, e.pos.column, e.message); };
    std::stable_sort(doc.errors.begin(), doc.errors.end(),
                     [&](const SyntaxError& a, const SyntaxError& b) { return key(a) < key(b); });
    doc.errors.erase(std::unique(doc.errors.begin(), doc.errors.end(),
                                 [&](const SyntaxError& a, const SyntaxError& b) { return key(a) == key(b); }),
                     doc.errors.end());
    if (doc.root.kind == ConfNode::Kind::null) doc.root.kind = ConfNode::Kind::map;  // empty file
  } catch (const YAML::Exception& e) {
    doc.errors.push_back({pos_of(e.mark), e.msg});
  }
  return doc;
}

}  // namespace retentiond::policy
