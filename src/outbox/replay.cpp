#include "outbox/replay.hpp"

#include <fmt/format.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <stdexcept>

#include "common/short_text.hpp"
#include "outbox/outbox.hpp"

namespace kg::outbox {
namespace {

using nlohmann::json;

[[noreturn]] void bad(const std::string& what) { throw std::invalid_argument(what); }

const json& field(const json& j, const char* name, json::value_t type, const char* type_name) {
    const auto it = j.find(name);
    if (it == j.end()) bad(fmt::format("no '{}'", name));
    // Every integer type: nlohmann reads 41 as unsigned, -1 as signed.
    const bool ok = type == json::value_t::number_integer ? it->is_number_integer() : it->type() == type;
    if (!ok) bad(fmt::format("'{}' is {}, not {}", name, it->type_name(), type_name));
    return *it;
}

std::string text_field(const json& j, const char* name) {
    return field(j, name, json::value_t::string, "a string").get<std::string>();
}

std::int64_t number_field(const json& j, const char* name) {
    const auto& v = field(j, name, json::value_t::number_integer, "an integer");
    if (v.is_number_unsigned() && v.get<std::uint64_t>() > static_cast<std::uint64_t>(INT64_MAX))
        bad(fmt::format("'{}' is {}, too large", name, v.dump()));
    const auto n = v.get<std::int64_t>();
    if (n < 1) bad(fmt::format("'{}' is {}: numbers start at 1", name, n));
    return n;
}

}  // namespace

ReplayRequest parse_replay_request(std::string_view payload, const std::string& site) {
    const auto j = json::parse(payload, nullptr, false);
    if (j.is_discarded()) bad("not JSON");
    if (!j.is_object()) bad(fmt::format("a JSON {}, not an object", j.type_name()));
    ReplayRequest r;
    r.request_id = text_field(j, "request_id");
    r.site = text_field(j, "site");
    r.stream = text_field(j, "stream");
    r.from = number_field(j, "from");
    r.to = number_field(j, "to");
    r.monitor = text_field(j, "monitor");
    r.time = text_field(j, "time");
    if (r.site != site) bad(fmt::format("it is for site '{}', this is '{}'", r.site, site));
    static const std::regex hex16("^[0-9a-f]{16}$");
    if (!std::regex_match(r.stream, hex16))
        bad(fmt::format("'stream' is '{}', not 16 lowercase hex digits", r.stream));
    if (r.from > r.to) bad(fmt::format("'from' {} is after 'to' {}", r.from, r.to));
    if (r.to - r.from + 1 > kMaxReplayNumbers) {
        bad(fmt::format("{}..{} names {} numbers, more than {}", r.from, r.to, r.to - r.from + 1,
                        kMaxReplayNumbers));
    }
    return r;
}

ReplayDesk::ReplayDesk(Outbox& outbox, std::string site, std::shared_ptr<spdlog::logger> log)
    : outbox_(outbox), site_(std::move(site)), log_(std::move(log)) {}

ReplayDesk::~ReplayDesk() { stop(); }

void ReplayDesk::start() {
    worker_.start([this] { run(); });
}

void ReplayDesk::stop() { worker_.stop(); }

void ReplayDesk::submit(std::string payload) {
    {
        std::lock_guard lock(mutex_);
        if (waiting_.size() >= kMaxWaiting) {
            ++dropped_;
            log_->warn("replay request dropped: {} requests already wait ({} dropped in total)",
                       waiting_.size(), dropped_);
            return;
        }
        waiting_.push_back(std::move(payload));
    }
    worker_.wake();
}

void ReplayDesk::run() {
    while (worker_.wait_for(std::chrono::seconds(1))) {
        for (;;) {
            std::string payload;
            {
                std::lock_guard lock(mutex_);
                if (waiting_.empty()) break;
                payload = std::move(waiting_.front());
                waiting_.pop_front();
            }
            handle(payload);
            if (worker_.stopping()) return;
        }
    }
}

void ReplayDesk::handle(const std::string& payload) {
    ReplayRequest request;
    try {
        request = parse_replay_request(payload, site_);
    } catch (const std::invalid_argument& e) {
        // Quoted in part and printable: the line says what came, without letting a huge payload
        // flood the log or a line feed in it write a line of its own.
        log_->error("replay request ignored: {}: {}", kg::shortened_text(e.what(), 300),
                    kg::shortened_text(payload, 200));
        return;
    }
    try {
        const auto a = outbox_.answer(request, Clock::now(), [this] { return worker_.stopping(); });
        if (a.stopped_at > 0) {
            log_->info("replay request {} for {}..{} cut short at {} by the stop ({} sent again so far)",
                       kg::shortened_text(request.request_id, 64), request.from, request.to, a.stopped_at,
                       a.replayed);
            return;
        }
        log_->info(
            "replay request {} from {} for {}..{} of stream {}: {} sent again, {} still queued, {} lost in "
            "{} lost "
            "message(s), {} above the highest number given{}",
            kg::shortened_text(request.request_id, 64), kg::shortened_text(request.monitor, 64), request.from,
            request.to, request.stream, a.replayed, a.queued, a.lost, a.lost_messages, a.ignored,
            a.snapshots > 0 ? fmt::format("; {} start snapshots with them", a.snapshots) : std::string());
    } catch (const StoreError& e) {
        log_->error("replay request {} for {}..{} not answered: {}",
                    kg::shortened_text(request.request_id, 64), request.from, request.to, e.what());
    } catch (const std::exception& e) {
        // A kept message the answer could not read (a damaged row): said, and the desk goes on; an
        // exception out of its thread would end the gateway.
        log_->error("replay request {} for {}..{} not answered: {}",
                    kg::shortened_text(request.request_id, 64), request.from, request.to, e.what());
    }
}

}  // namespace kg::outbox
