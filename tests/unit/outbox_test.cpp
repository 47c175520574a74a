// The outbox when its store fails: a real SQLite file that cannot grow (the disk is full, here
// RLIMIT_FSIZE in a child process), then can again.
#include "outbox/outbox.hpp"

#include <gtest/gtest.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <filesystem>

#include "common/logging.hpp"

namespace fs = std::filesystem;
using kg::outbox::Message;
using kg::outbox::Priority;

namespace {

Message alert(const std::string& payload) {
    return {0, "kitchen/s/events", payload, 1, false, Priority::alert};
}

// Each check of the child is one bit of its exit code, so a failure says which one.
int run_disk_full(const fs::path& dir) {
    int failed = 0;
    auto check = [&failed](int bit, bool ok) { failed |= ok ? 0 : 1 << bit; };
    const auto path = (dir / "outbox.db").string();
    kg::outbox::SqliteStore store(path, {});
    kg::config::Mqtt mqtt;
    mqtt.url = "tcp://127.0.0.1:1";  // never started: nothing is sent in this test
    mqtt.client_id = "outbox-test";
    kg::publish::MqttLink link(mqtt, "kitchen/s/availability", kg::Logging::null_logger());
    kg::outbox::Outbox outbox(store, link, kg::publish::Topics("kitchen", "s"), "s",
                              kg::Logging::null_logger());
    for (int i = 0; i < 3; ++i) check(0, outbox.enqueue(alert("m" + std::to_string(i))));

    // The disk is full: no file may grow past its present size.
    std::signal(SIGXFSZ, SIG_IGN);  // write() then fails with EFBIG instead of killing
    rlimit limit{};
    getrlimit(RLIMIT_FSIZE, &limit);
    const auto hard = limit.rlim_max;
    std::uintmax_t largest = 0;
    for (const auto& f : fs::directory_iterator(dir)) largest = std::max(largest, f.file_size());
    limit.rlim_cur = largest;
    setrlimit(RLIMIT_FSIZE, &limit);
    for (int i = 3; i < 8; ++i)
        check(0, outbox.enqueue(alert("m" + std::to_string(i) + std::string(5000, 'x'))));
    check(1, store.size() == 3);
    check(3, outbox.in_memory() == 5 && outbox.depth() == 8);
    check(4, outbox.store_errors() >= 1);
    const auto problem = outbox.store_problem();
    check(5, problem && problem->find("outbox store failing") != std::string::npos);

    // Space again: the next message first moves what was kept in memory into the store, in order.
    limit.rlim_cur = hard;
    setrlimit(RLIMIT_FSIZE, &limit);
    check(6, outbox.enqueue(alert("m8")));
    check(7, outbox.in_memory() == 0 && store.size() == 9 && !outbox.store_problem());
    std::string order;
    while (auto m = store.front()) {
        order += m->payload.substr(0, 2);
        store.remove(m->seq);
    }
    check(2, order == "m0m1m2m3m4m5m6m7m8");
    return failed;
}

}  // namespace

TEST(Outbox, KeepsInMemoryWhatAFullDiskRefusesAndStoresItInOrderOnceThereIsSpace) {
    const fs::path dir = fs::temp_directory_path() / ("kg-outbox-" + std::to_string(getpid()));
    fs::create_directories(dir);
    const pid_t child = fork();
    ASSERT_GE(child, 0);
    if (child == 0) _exit(run_disk_full(dir));
    int status = 0;
    ASSERT_EQ(waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFEXITED(status)) << "the child died of signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 0) << "failed checks (bits): " << WEXITSTATUS(status);
    fs::remove_all(dir);
}
