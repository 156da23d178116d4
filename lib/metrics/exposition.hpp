#pragma once
// The Prometheus text exposition format, version 0.0.4
// (https://prometheus.io/docs/instrumenting/exposition_formats/): what
// `metrics` returns and GET /metrics serves. A writer only: families are
// written one after the other, each with its HELP and TYPE lines, then its
// samples; label values are escaped as the format requires.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace retentiond::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Exposition {
 public:
  // Starts a family: `type` is counter, gauge or histogram.
  void family(std::string_view name, std::string_view type, std::string_view help);
  // One sample of the current family (`name` may carry a suffix: _bucket,
  // _sum, _count).
  void sample(std::string_view name, const Labels& labels, double value);
  void sample(std::string_view name, const Labels& labels, std::int64_t value);

  const std::string& text() const { return m_text; }

 private:
  void labels(const Labels& labels);
  std::string m_text;
};

// Label values: backslash, double quote and line feed escaped.
std::string escape_label_value(std::string_view value);
// HELP text: backslash and line feed escaped.
std::string escape_help(std::string_view text);
// A float as the format reads it: +Inf, -Inf, NaN, or the shortest
// decimal that reads back as the same double.
std::string format_value(double value);

// Counts of observations at or below each bound, as a Prometheus histogram
// (cumulative buckets, +Inf implied), their sum and their number.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // Writes the family's _bucket, _sum and _count samples.
  void write(Exposition& out, std::string_view name, const Labels& labels = {}) const;

  std::int64_t count() const { return m_count; }
  double sum() const { return m_sum; }

 private:
  std::vector<double> m_bounds;          // ascending
  std::vector<std::int64_t> m_buckets;  // observations in (bound[i-1], bound[i]]; the last: above all bounds
  std::int64_t m_count = 0;
  double m_sum = 0;
};

}  // namespace retentiond::metrics
