#pragma once
// The listening sockets of the HTTP sides, handed from one run of the gateway to the next at a
// reload (HttpServer::release_listening): between the two runs the port was closed, and a parent's
// player asking then was refused and started its stream over; kept, the request waits in the
// socket's backlog for the next run. A side whose address the next run changes listens anew.

#include <map>
#include <optional>
#include <string>
#include <utility>

#include "common/fd.hpp"

namespace kg::web {

class KeptListeners {
public:
    // `side`: "api" or "public"; `listen`: its address as configured.
    void keep(const std::string& side, std::string listen, Fd socket) {
        if (socket.get() < 0) return;
        kept_.insert_or_assign(side, Kept{std::move(listen), std::move(socket)});
    }
    // The socket kept for `side` if it listens on `listen`; one on another address is closed.
    std::optional<Fd> take(const std::string& side, const std::string& listen) {
        const auto it = kept_.find(side);
        if (it == kept_.end()) return std::nullopt;
        auto kept = std::move(it->second);
        kept_.erase(it);
        if (kept.listen != listen) return std::nullopt;
        return std::move(kept.socket);
    }
    // Closes the socket kept for `side` unless it listens on `listen` (empty: the side is off).
    void drop_unless(const std::string& side, const std::string& listen) {
        const auto it = kept_.find(side);
        if (it != kept_.end() && it->second.listen != listen) kept_.erase(it);
    }
    // Closes those no side took (a side the next run does not open).
    void clear() { kept_.clear(); }

private:
    struct Kept {
        std::string listen;
        Fd socket;
    };
    std::map<std::string, Kept> kept_;
};

}  // namespace kg::web
