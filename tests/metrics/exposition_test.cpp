// The exposition writer: expected text written out by hand from the format's
// documentation (prometheus.io, "Exposition formats", text format 0.0.4).

#include "lib/metrics/exposition.hpp"

#include <gtest/gtest.h>

#include <limits>

namespace retentiond::metrics {
namespace {

TEST(Exposition, FamiliesLabelsAndEscapes) {
  Exposition out;
  out.family("retentiond_x", "gauge", "Help with a \\ backslash\nand a new line");
  out.sample("retentiond_x", {}, std::int64_t{3});
  out.sample("retentiond_x", {{"category", "a \"b\" \\ c\nd"}, {"state", "active"}}, std::int64_t{-2});
  out.family("retentiond_y_total", "counter", "A counter");
  out.sample("retentiond_y_total", {{"action", "purge"}}, 0.25);
  EXPECT_EQ(out.text(),
            "# HELP retentiond_x Help with a \\\\ backslash\\nand a new line\n"
            "# TYPE retentiond_x gauge\n"
            "retentiond_x 3\n"
            "retentiond_x{category=\"a \\\"b\\\" \\\\ c\\nd\",state=\"active\"} -2\n"
            "# HELP retentiond_y_total A counter\n"
            "# TYPE retentiond_y_total counter\n"
            "retentiond_y_total{action=\"purge\"} 0.25\n");
}

TEST(Exposition, SpecialValues) {
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
  EXPECT_EQ(format_value(0.1), "0.1");
  EXPECT_EQ(format_value(300), "300");
  EXPECT_EQ(format_value(1e21), "1e+21");
}

TEST(Histogram, BucketsAreCumulativeWithInfAndSumAndCount) {
  // Values exact in binary, so that the sum is too.
  Histogram h({0.25, 1, 10});
  for (double v : {0.125, 0.25, 0.5, 3.0, 30.0, 1.0}) h.observe(v);
  Exposition out;
  out.family("d_seconds", "histogram", "Durations");
  h.write(out, "d_seconds", {{"k", "v"}});
  EXPECT_EQ(out.text(),
            "# HELP d_seconds Durations\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{k=\"v\",le=\"0.25\"} 2\n"  // 0.125, 0.25 (le: at or below)
            "d_seconds_bucket{k=\"v\",le=\"1\"} 4\n"     // + 0.5, 1.0
            "d_seconds_bucket{k=\"v\",le=\"10\"} 5\n"    // + 3.0
            "d_seconds_bucket{k=\"v\",le=\"+Inf\"} 6\n"  // + 30.0
            "d_seconds_sum{k=\"v\"} 34.875\n"
            "d_seconds_count{k=\"v\"} 6\n");
}

TEST(Histogram, BoundsMustAscend) { EXPECT_THROW(Histogram({1, 0.5}), std::invalid_argument); }

}  // namespace
}  // namespace retentiond::metrics
