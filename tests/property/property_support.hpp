#pragma once
// What every property test here shares: the seed and case count (fixed
// defaults, overridable from the environment and always printed, so that a
// failure in CI can be replayed exactly), a small deterministic random
// generator, and the scale-down under sanitizers.
//
// The generator is our own (SplitMix64) rather than <random>'s
// distributions, whose output is implementation-defined: the same seed must
// give the same cases with every standard library.

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace retentiond::property {

// Under ASan/UBSan (scripts/test-asan.sh, a Debug build) every case costs
// ten to fifty times more. The properties are the same; random case counts
// are divided by kSanitizerDivisor (a million becomes 50,000) and sizes
// (records, steps) by kSanitizerSizeDivisor, so that the sanitizer run stays
// short: it is there to find memory errors and undefined behaviour on the
// code paths, which a fraction of the cases reaches as well as all of them.
// The RelWithDebInfo CI build runs the full counts.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
inline constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(undefined_behavior_sanitizer) || \
    __has_feature(thread_sanitizer)
inline constexpr bool kSanitized = true;
#else
inline constexpr bool kSanitized = false;
#endif
#else
inline constexpr bool kSanitized = false;
#endif
inline constexpr std::uint64_t kSanitizerDivisor = 20;
inline constexpr std::uint64_t kSanitizerSizeDivisor = 10;

inline constexpr std::uint64_t kDefaultSeed = 0x5EED2024C0FFEEULL;

// RETENTIOND_PROPERTY_SEED (decimal or 0x-hex), else the fixed default.
inline std::uint64_t property_seed() {
  if (const char* s = std::getenv("RETENTIOND_PROPERTY_SEED"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 0);
  }
  return kDefaultSeed;
}

// RETENTIOND_PROPERTY_CASES when set (taken as is, sanitizers or not), else
// `full`, divided by kSanitizerDivisor under sanitizers.
inline std::uint64_t property_cases(std::uint64_t full) {
  if (const char* s = std::getenv("RETENTIOND_PROPERTY_CASES"); s != nullptr && *s != '\0') {
    return std::strtoull(s, nullptr, 0);
  }
  return kSanitized ? full / kSanitizerDivisor : full;
}

// The scale-down for sizes that are not case counts (records, steps):
// divided by `divisor` under sanitizers.
inline std::uint64_t scaled(std::uint64_t full, std::uint64_t divisor = kSanitizerSizeDivisor) {
  return kSanitized ? std::max<std::uint64_t>(1, full / divisor) : full;
}

inline std::string hex(std::uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

// One line in the test's output naming what to set to replay the run.
inline void announce(const char* test, std::uint64_t seed, std::uint64_t cases) {
  std::printf("[ property ] %s: seed=%s cases=%llu%s (replay with RETENTIOND_PROPERTY_SEED=%s)\n", test,
              hex(seed).c_str(), static_cast<unsigned long long>(cases),
              kSanitized ? " (scaled down: sanitizers)" : "", hex(seed).c_str());
  std::fflush(stdout);
}

// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast, and every seed is good.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) : m_state(seed) {}
  // The generator of case `index` of a run: cases are independent of one
  // another, so a failing case replays without the ones before it.
  static Rng for_case(std::uint64_t seed, std::uint64_t index) {
    Rng r(seed ^ (index * 0xD1B54A32D192ED03ULL));
    r.next();
    return r;
  }

  std::uint64_t next() {
    std::uint64_t z = (m_state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
  }
  // Uniform in [lo, hi] (the modulo bias is below 2^-40 for our ranges).
  std::int64_t range(std::int64_t lo, std::int64_t hi) {
    const auto span = static_cast<std::uint64_t>(hi - lo) + 1;
    return lo + static_cast<std::int64_t>(next() % span);
  }
  // True with probability percent/100.
  bool chance(int percent) { return range(0, 99) < percent; }
  template <typename T>
  const T& pick(const std::vector<T>& v) {
    return v[static_cast<std::size_t>(range(0, static_cast<std::int64_t>(v.size()) - 1))];
  }

 private:
  std::uint64_t m_state;
};

}  // namespace retentiond::property
