#include "lib/policy/conf_tree.hpp"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <set>
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

ConfNode from_yaml(const YAML::Node& n, std::vector<SyntaxError>& errors) {
  ConfNode out;
  out.pos = pos_of(n.Mark());
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
        out.entries.push_back({key, pos_of(kv.first.Mark()), from_yaml(kv.second, errors)});
      }
      break;
    }
    case YAML::NodeType::Sequence:
      out.kind = ConfNode::Kind::seq;
      for (const auto& item : n) out.items.push_back(from_yaml(item, errors));
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
  return out;
}

}  // namespace

ConfDocument parse_conf(std::string_view text, ConfFormat format) {
  ConfDocument doc;
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
    doc.root = from_yaml(root, doc.errors);
    if (doc.root.kind == ConfNode::Kind::null) doc.root.kind = ConfNode::Kind::map;  // empty file
  } catch (const YAML::Exception& e) {
    doc.errors.push_back({pos_of(e.mark), e.msg});
  }
  return doc;
}

}  // namespace retentiond::policy
