// Resource attributes from the OpenTelemetry environment variables.
#pragma once

#include <string_view>

#include "export/exporter_config.h"
#include "span/span.h"

namespace edgetrace {

// OTEL_RESOURCE_ATTRIBUTES ("k=v,k2=v2", percent-decoded, all values strings) plus
// OTEL_SERVICE_NAME, which wins for service.name as the specification requires.
// Throws ConfigError naming the variable on malformed input.
Attributes resource_attributes_from_env(const GetEnv& getenv);

// Sets every attribute of `overrides` in `base`, replacing same-key entries in place.
void merge_attributes(Attributes& base, const Attributes& overrides);

}  // namespace edgetrace
