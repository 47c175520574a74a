#include "monitor/event_cause.hpp"

#include <algorithm>
#include <string>

#include "common/short_text.hpp"

namespace kg::monitor {

CauseRead read_event_cause(const nlohmann::json& payload) {
    CauseRead out;
    const auto it = payload.find("cause");
    if (it == payload.end() || it->is_null()) return out;
    const auto kind = it->is_object() ? it->find("kind") : it->end();
    const auto text = it->is_object() ? it->find("text") : it->end();
    // A kind is a word (the gateway's are unauthorized, not_found, unreachable, ...): anything else
    // cannot be sorted by, and a site's text goes in `text`, shortened.
    const bool word =
        it->is_object() && kind != it->end() && kind->is_string() &&
        !kind->get_ref<const std::string&>().empty() && kind->get_ref<const std::string&>().size() <= 32 &&
        std::all_of(kind->get_ref<const std::string&>().begin(), kind->get_ref<const std::string&>().end(),
                    [](char c) { return (c >= 'a' && c <= 'z') || c == '_'; });
    if (!word || text == it->end() || !text->is_string()) {
        out.unusable = true;
        return out;
    }
    out.cause = nlohmann::json{{"kind", *kind},
                               {"text", shortened_text(text->get<std::string>(), kMaxCauseTextBytes)}};
    return out;
}

WindowsRead read_windows_missed(const nlohmann::json& payload) {
    WindowsRead out;
    const auto it = payload.find("windows_missed");
    if (it == payload.end() || it->is_null()) return out;
    // At most one window a minute can end: a million is more than a century of them.
    if (it->is_number_integer() && it->get<std::int64_t>() >= 1 && it->get<std::int64_t>() <= 1000000) {
        out.windows = it->get<std::int64_t>();
    } else {
        out.unusable = true;
    }
    return out;
}

}  // namespace kg::monitor
