#pragma once
// A real Mosquitto for a unit test that needs one: started on a free loopback port, ready when
// the constructor returns, killed by the destructor. available() is false where Mosquitto is not
// installed, so the test can skip.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>
#include <thread>

extern char** environ;

namespace kg::test {

// A port nobody listens on now.
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
    ::close(fd);
    return ntohs(a.sin_port);
}

class TestBroker {
public:
    static constexpr const char* kMosquitto = "/usr/sbin/mosquitto";
    static bool available() { return std::filesystem::exists(kMosquitto); }

    TestBroker() : port_(free_port()) { spawn(); }
    ~TestBroker() { stop(); }
    TestBroker(const TestBroker&) = delete;
    TestBroker& operator=(const TestBroker&) = delete;

    int port() const { return port_; }
    std::string url() const { return "tcp://127.0.0.1:" + std::to_string(port_); }

    // Killed and started again on the same port: its clients lose their connections and make new ones.
    void restart() {
        stop();
        spawn();
    }

private:
    void spawn() {
        const std::string port = std::to_string(port_);
        // Its default queue per client is 1000 messages: a test that floods a client the loaded CI
        // machine lets fall behind lost the rest at the broker, silently (a flood test then never
        // saw the input's own bound reached). No limit here: what a test floods arrives.
        config_ = std::filesystem::temp_directory_path() /
                  ("kg-test-broker-" + port + "-" + std::to_string(::getpid()) + ".conf");
        {
            std::ofstream conf(config_);
            conf << "listener " << port << " 127.0.0.1\nallow_anonymous true\nmax_queued_messages 0\n";
        }
        char* argv[] = {const_cast<char*>(kMosquitto), const_cast<char*>("-c"),
                        const_cast<char*>(config_.c_str()), nullptr};
        posix_spawn_file_actions_t quiet;  // its log would fill the test's output
        posix_spawn_file_actions_init(&quiet);
        posix_spawn_file_actions_addopen(&quiet, 1, "/dev/null", O_WRONLY, 0);
        posix_spawn_file_actions_addopen(&quiet, 2, "/dev/null", O_WRONLY, 0);
        const int rc = posix_spawn(&pid_, kMosquitto, &quiet, nullptr, argv, environ);
        posix_spawn_file_actions_destroy(&quiet);
        if (rc != 0) throw std::runtime_error("cannot start " + std::string(kMosquitto));
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
        while (!accepts()) {
            if (std::chrono::steady_clock::now() > deadline) {
                stop();
                throw std::runtime_error("Mosquitto did not listen on port " + port + " within 10 s");
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(20));
        }
    }
    bool accepts() const {
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in a{};
        a.sin_family = AF_INET;
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        a.sin_port = htons(static_cast<std::uint16_t>(port_));
        const bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
        ::close(fd);
        return ok;
    }
    void stop() {
        if (pid_ <= 0) return;
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
        pid_ = 0;
        std::error_code ec;
        std::filesystem::remove(config_, ec);
    }

    int port_;
    std::string config_;
    pid_t pid_ = 0;
};

}  // namespace kg::test
