// Fuzz target: the YAML policy loader (lib/policy: yaml-cpp -> ConfNode ->
// validation), with the checks of fuzz/policy_check.hpp.

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/policy_check.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  retentiond::fuzz::check_policy_text(std::string_view(reinterpret_cast<const char*>(data), size),
                                      retentiond::policy::ConfFormat::yaml);
  return 0;
}
