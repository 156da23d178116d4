#include "lib/metrics/exposition.hpp"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace retentiond::metrics {

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (const char c : value) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_help(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  char buffer[32];
  const auto [end, ec] = std::to_chars(std::begin(buffer), std::end(buffer), value);
  return std::string(buffer, end);
}

void Exposition::family(std::string_view name, std::string_view type, std::string_view help) {
  m_text.append("# HELP ").append(name).append(" ").append(escape_help(help)).append("\n");
  m_text.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

void Exposition::labels(const Labels& labels) {
  if (labels.empty()) return;
  m_text += '{';
  for (std::size_t i = 0; i < labels.size(); ++i) {
    if (i > 0) m_text += ',';
    m_text.append(labels[i].first).append("=\"").append(escape_label_value(labels[i].second)).append("\"");
  }
  m_text += '}';
}

void Exposition::sample(std::string_view name, const Labels& l, double value) {
  m_text.append(name);
  labels(l);
  m_text.append(" ").append(format_value(value)).append("\n");
}

void Exposition::sample(std::string_view name, const Labels& l, std::int64_t value) {
  m_text.append(name);
  labels(l);
  m_text.append(" ").append(std::to_string(value)).append("\n");
}

Histogram::Histogram(std::vector<double> bounds) : m_bounds(std::move(bounds)), m_buckets(m_bounds.size() + 1, 0) {
  if (!std::is_sorted(m_bounds.begin(), m_bounds.end())) throw std::invalid_argument("histogram bounds must ascend");
}

void Histogram::observe(double value) {
  const auto at = std::lower_bound(m_bounds.begin(), m_bounds.end(), value) - m_bounds.begin();
  ++m_buckets[static_cast<std::size_t>(at)];
  ++m_count;
  m_sum += value;
}

void Histogram::write(Exposition& out, std::string_view name, const Labels& labels) const {
  const std::string bucket = std::string(name) + "_bucket";
  std::int64_t cumulative = 0;
  for (std::size_t i = 0; i <= m_bounds.size(); ++i) {
    cumulative += m_buckets[i];
    Labels l = labels;
    l.emplace_back("le", i < m_bounds.size() ? format_value(m_bounds[i]) : "+Inf");
    out.sample(bucket, l, cumulative);
  }
  out.sample(std::string(name) + "_sum", labels, m_sum);
  out.sample(std::string(name) + "_count", labels, m_count);
}

}  // namespace retentiond::metrics
