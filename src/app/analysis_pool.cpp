#include "app/analysis_pool.hpp"

#include <algorithm>

namespace kg::app {

AnalysisPool::AnalysisPool(int threads) : threads_(std::max(1, threads)) {}

AnalysisPool::~AnalysisPool() { stop(); }

void AnalysisPool::start() {
    for (int i = 0; i < threads_; ++i) workers_.emplace_back([this] { run(); });
}

void AnalysisPool::stop() {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    cv_.notify_all();
    for (auto& w : workers_) w.join();
    workers_.clear();
}

void AnalysisPool::notify(AnalysisJob& job) {
    {
        std::lock_guard lock(mutex_);
        if (job.running_) {
            job.again_ = true;
            return;
        }
        if (job.queued_) return;
        job.queued_ = true;
        ready_.push_back(&job);
    }
    cv_.notify_one();
}

void AnalysisPool::run() {
    std::unique_lock lock(mutex_);
    for (;;) {
        cv_.wait(lock, [this] { return stop_ || !ready_.empty(); });
        if (stop_) return;
        AnalysisJob* job = ready_.front();
        ready_.pop_front();
        job->queued_ = false;
        job->running_ = true;
        lock.unlock();
        job->run_once();
        lock.lock();
        job->running_ = false;
        if (job->again_) {
            job->again_ = false;
            job->queued_ = true;
            ready_.push_back(job);
            cv_.notify_one();
        }
    }
}

}  // namespace kg::app
