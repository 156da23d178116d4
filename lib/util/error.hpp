#pragma once
// Error: what went wrong, in terms the admin protocol can report unchanged.
// `code` maps one to one to the JSON-RPC error codes of the protocol spec;
// `reason` is the finer machine-readable reason (error.data.reason) and
// `message` a sentence for a person.

#include <nlohmann/json.hpp>
#include <string>

namespace retentiond {

enum class ErrorCode {
  invalid_request = -32600,
  method_not_found = -32601,
  invalid_params = -32602,
  internal_error = -32603,
  not_found = -32001,
  conflict = -32002,
  forbidden = -32003,
  confirmation_required = -32004,
  storage_error = -32005,
};

struct Error {
  ErrorCode code = ErrorCode::internal_error;
  std::string reason;   // e.g. "bad_time"; defaults to the code's own name
  std::string message;  // for a person
  nlohmann::json data = nlohmann::json::object();  // extra fields for error.data

  static Error invalid_params(std::string reason, std::string message) {
    return {ErrorCode::invalid_params, std::move(reason), std::move(message), nlohmann::json::object()};
  }
  static Error not_found(std::string message) {
    return {ErrorCode::not_found, "not_found", std::move(message), nlohmann::json::object()};
  }
  static Error conflict(std::string message) {
    return {ErrorCode::conflict, "conflict", std::move(message), nlohmann::json::object()};
  }
  static Error storage(std::string message) {
    return {ErrorCode::storage_error, "storage_error", std::move(message), nlohmann::json::object()};
  }
  static Error internal(std::string message) {
    return {ErrorCode::internal_error, "internal_error", std::move(message), nlohmann::json::object()};
  }
};

}  // namespace retentiond
