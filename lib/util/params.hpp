#pragma once
// Checks shared by every method that takes JSON parameters.

#include <algorithm>
#include <initializer_list>
#include <string_view>

#include <nlohmann/json.hpp>

#include "lib/util/result.hpp"

namespace retentiond {

// Success when `params` has no key outside `allowed`; otherwise
// invalid_params naming the first unknown parameter.
inline Status only_keys(const nlohmann::json& params, std::initializer_list<std::string_view> allowed) {
  for (const auto& [k, v] : params.items()) {
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      return Error::invalid_params("invalid_params", "unknown parameter '" + k + "'");
    }
  }
  return {};
}

}  // namespace retentiond
