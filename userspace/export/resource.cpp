#include "export/resource.h"

#include <algorithm>

namespace edgetrace {

void merge_attributes(Attributes& base, const Attributes& overrides) {
  for (const auto& attr : overrides) {
    auto it = std::find_if(base.begin(), base.end(), [&](const Attribute& a) { return a.key == attr.key; });
    if (it != base.end())
      it->value = attr.value;
    else
      base.push_back(attr);
  }
}

Attributes resource_attributes_from_env(const GetEnv& getenv) {
  Attributes out;
  if (auto text = getenv("OTEL_RESOURCE_ATTRIBUTES")) {
    Attributes parsed;
    for (auto& [k, v] : parse_key_value_list(*text, "OTEL_RESOURCE_ATTRIBUTES"))
      parsed.push_back(Attribute{std::move(k), AttributeValue{std::move(v)}});
    merge_attributes(out, parsed);
  }
  if (auto name = getenv("OTEL_SERVICE_NAME"); name && !name->empty())
    merge_attributes(out, Attributes{Attribute{"service.name", AttributeValue{*name}}});
  return out;
}

}  // namespace edgetrace
