#pragma once
// A fixed pool of analysis threads shared by all cameras, so the CPU spent on checks is bounded
// whatever the number of cameras. A camera with a new frame is queued once; its job never runs on
// two threads at once, so each camera's checks see their frames in order.

#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <vector>

namespace kg::app {

class AnalysisJob {
public:
    virtual ~AnalysisJob() = default;
    virtual void run_once() = 0;

private:
    friend class AnalysisPool;
    bool queued_ = false, running_ = false, again_ = false;  // guarded by the pool's mutex
};

class AnalysisPool {
public:
    explicit AnalysisPool(int threads);
    ~AnalysisPool();
    AnalysisPool(const AnalysisPool&) = delete;
    AnalysisPool& operator=(const AnalysisPool&) = delete;

    void start();
    void stop();
    // The job has work: run it soon (once, however often this is called before it runs).
    void notify(AnalysisJob& job);
    int size() const { return threads_; }

private:
    void run();

    int threads_;
    std::mutex mutex_;
    std::condition_variable cv_;
    std::deque<AnalysisJob*> ready_;
    bool stop_ = false;
    std::vector<std::thread> workers_;
};

}  // namespace kg::app
