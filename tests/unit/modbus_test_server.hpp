#pragma once
// A real Modbus TCP server (libmodbus in server mode) on a thread, for the tests of the Modbus
// poller: it answers every unit id with the same registers, as a TCP device that ignores the unit
// does, records the unit id of each request, and serves one client at a time, as many devices and
// serial gateways do (a second connection waits unanswered in the listen queue).

#include <arpa/inet.h>
#include <modbus/modbus.h>
#include <netinet/in.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace kg::test {

class ModbusTcpServer {
public:
    // `idle_close`: the connection is closed when no request came for this long (zero: never), as
    // devices with an idle timeout do.
    explicit ModbusTcpServer(std::uint16_t value,
                             std::chrono::milliseconds idle_close = std::chrono::milliseconds::zero())
        : idle_close_(idle_close),
          map_(modbus_mapping_new(0, 0, 16, 16)),
          ctx_(modbus_new_tcp("127.0.0.1", 0)) {
        if (!map_ || !ctx_) throw std::runtime_error("cannot set up the Modbus server");
        for (int i = 0; i < 16; ++i) map_->tab_registers[i] = map_->tab_input_registers[i] = value;
        listener_ = modbus_tcp_listen(ctx_.get(), 1);
        if (listener_ < 0) throw std::runtime_error("modbus_tcp_listen failed");
        sockaddr_in addr{};
        socklen_t len = sizeof addr;
        if (getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            ::close(listener_);
            throw std::runtime_error("getsockname failed");
        }
        port_ = ntohs(addr.sin_port);
        thread_ = std::thread([this] { serve(); });
    }
    ~ModbusTcpServer() {
        stop_ = true;
        thread_.join();
        ::close(listener_);
    }
    ModbusTcpServer(const ModbusTcpServer&) = delete;
    ModbusTcpServer& operator=(const ModbusTcpServer&) = delete;

    std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }
    std::uint16_t port() const { return port_; }
    std::set<int> units() {
        std::lock_guard lock(mutex_);
        return units_;
    }
    // Requests to these units are not answered, as a serial gateway whose unit is switched off
    // (and that sends no exception for it) does.
    void silence(std::set<int> units) {
        std::lock_guard lock(mutex_);
        silent_ = std::move(units);
    }
    // A connection quiet for longer than `after` is never answered again, as one a NAT router
    // dropped without a word (zero: off).
    void ignore_after_idle(std::chrono::milliseconds after) { ignore_after_ = after; }
    // Requests to these units are answered with the given exception (0x0B: a serial gateway's
    // "target device failed to respond").
    void answer_with_exception(std::map<int, int> codes) {
        std::lock_guard lock(mutex_);
        exceptions_ = std::move(codes);
    }
    // Requests to these units are answered with a frame of another transaction, as a noisy line or
    // a confused gateway may: an answer, if not a reading.
    void garble(std::set<int> units) {
        std::lock_guard lock(mutex_);
        garbled_ = std::move(units);
    }
    // The units of the requests received, in order.
    std::vector<int> order() {
        std::lock_guard lock(mutex_);
        return order_;
    }
    // Requests received for `unit`, answered or not.
    int requests(int unit) {
        std::lock_guard lock(mutex_);
        const auto it = requests_.find(unit);
        return it == requests_.end() ? 0 : it->second;
    }
    // Requests answered, and connections closed for idling.
    int answered() const { return answered_.load(); }
    int idle_closes() const { return idle_closes_.load(); }

private:
    void serve() {
        int client = -1;
        auto last = std::chrono::steady_clock::now();
        bool dropped = false;  // the connection is dropped on the way (ignore_after_idle)
        while (!stop_) {
            if (client >= 0 && idle_close_ > std::chrono::milliseconds::zero() &&
                std::chrono::steady_clock::now() - last > idle_close_) {
                close_client(client);
                ++idle_closes_;
            }
            fd_set fds;
            FD_ZERO(&fds);
            FD_SET(client < 0 ? listener_ : client, &fds);
            timeval wait{0, 20'000};
            if (select(std::max(client, listener_) + 1, &fds, nullptr, nullptr, &wait) <= 0) continue;
            if (client < 0) {
                client = modbus_tcp_accept(ctx_.get(), &listener_);
                last = std::chrono::steady_clock::now();
                dropped = false;
                continue;
            }
            std::uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
            const int n = modbus_receive(ctx_.get(), query);
            if (n < 0) {  // the poller closed its connection: take its next one
                close_client(client);
                continue;
            }
            if (n == 0) continue;
            {
                std::lock_guard lock(mutex_);
                units_.insert(query[6]);  // the MBAP header's unit identifier
                ++requests_[query[6]];
                order_.push_back(query[6]);
                if (silent_.count(query[6]) > 0) continue;
                if (garbled_.count(query[6]) > 0 && n >= 12) {
                    // The MBAP header with the transaction id changed, then the function's answer.
                    const int count = (query[10] << 8) | query[11];
                    std::string frame{static_cast<char>(query[0] ^ 0xff),
                                      static_cast<char>(query[1] ^ 0xff),
                                      0,
                                      0,
                                      0,
                                      static_cast<char>(3 + 2 * count),
                                      static_cast<char>(query[6]),
                                      static_cast<char>(query[7]),
                                      static_cast<char>(2 * count)};
                    frame.append(static_cast<std::size_t>(2 * count), '\0');
                    [[maybe_unused]] const auto sent =
                        ::send(client, frame.data(), frame.size(), MSG_NOSIGNAL);
                    last = std::chrono::steady_clock::now();
                    continue;
                }
                if (const auto it = exceptions_.find(query[6]); it != exceptions_.end()) {
                    modbus_reply_exception(ctx_.get(), query, static_cast<unsigned>(it->second));
                    last = std::chrono::steady_clock::now();
                    continue;
                }
            }
            const auto ignore_after = ignore_after_.load();
            if (ignore_after > std::chrono::milliseconds::zero() &&
                std::chrono::steady_clock::now() - last > ignore_after)
                dropped = true;
            if (dropped) continue;
            modbus_reply(ctx_.get(), query, n, map_.get());
            ++answered_;
            last = std::chrono::steady_clock::now();
        }
        if (client >= 0) close_client(client);
    }
    // The context holds the client's socket too: it must not close it again at its end.
    void close_client(int& client) {
        ::close(client);
        client = -1;
        modbus_set_socket(ctx_.get(), -1);
    }

    struct MappingFree {
        void operator()(modbus_mapping_t* m) const { modbus_mapping_free(m); }
    };
    struct ContextFree {
        void operator()(modbus_t* m) const {
            modbus_close(m);
            modbus_free(m);
        }
    };
    std::chrono::milliseconds idle_close_;
    std::unique_ptr<modbus_mapping_t, MappingFree> map_;
    std::unique_ptr<modbus_t, ContextFree> ctx_;
    int listener_ = -1;
    std::uint16_t port_ = 0;
    std::atomic<bool> stop_{false};
    std::atomic<int> answered_{0}, idle_closes_{0};
    std::atomic<std::chrono::milliseconds> ignore_after_{std::chrono::milliseconds::zero()};
    std::mutex mutex_;
    std::set<int> units_, silent_, garbled_;
    std::map<int, int> requests_, exceptions_;
    std::vector<int> order_;
    std::thread thread_;
};

}  // namespace kg::test
