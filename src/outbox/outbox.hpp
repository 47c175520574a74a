#pragma once
// Events wait in the outbox until the broker has acknowledged them. Every message is committed to
// the store before it may be sent, sent one at a time in the order it was accepted, and removed
// only after its PUBACK. While the broker is away messages queue (within the store's budget) and
// the checks keep running; after a restart whatever was not acknowledged is sent again, in order.
// If the store itself fails (disk full, file unwritable) messages are kept in a bounded memory
// overflow, sent from there and moved into the store once it works again.
// With each event message the store records which events are open in the room (a start opens, an
// end closes, in the message's own transaction), so that a start after a crash can end them, and
// which clips a start promised that were not reported yet (a clip report removes its own). A
// message kept in memory carries its mark with it and records it when the store takes it: until
// then a crash loses the record as it loses the message (an event started and delivered from
// memory then stays open in the room, as before this record existed).

#include <spdlog/logger.h>

#include <atomic>
#include <condition_variable>
#include <functional>
#include <limits>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/log_throttle.hpp"
#include "events/event.hpp"
#include "outbox/overflow.hpp"
#include "outbox/replay.hpp"
#include "outbox/sqlite_store.hpp"
#include "publish/mqtt_link.hpp"
#include "publish/topics.hpp"

namespace kg::outbox {

class Outbox final : public events::EventSink {
public:
    Outbox(SqliteStore& store, publish::MqttLink& link, publish::Topics topics, std::string site,
           std::shared_ptr<spdlog::logger> log);
    ~Outbox() override;

    void submit(const events::Event& event) override;
    void submit_snapshot(const events::Event& event, std::string jpeg) override;
    void submit_clip(const events::ClipReport& clip) override;
    // Commits the message, or keeps it in memory if the store fails; false (and logged) if it was
    // refused (budget) or lost (store failing and memory overflow full). It gets no stream number.
    bool enqueue(Message message) { return accept(std::move(message), false); }

    // Answers a replay request (for this site, checked by parse_replay_request): the messages of the
    // range kept in the sent table go again unchanged, numbers still queued are skipped, each
    // contiguous run of the others gets one lost message with its reason, numbers above the highest
    // given are ignored; a request for another stream is answered lost as a whole. Everything goes
    // through the queue at Priority::replay, without a number. Throws StoreError if the store cannot
    // be read or written, or while messages wait in memory for it (the room asks again): what was
    // answered before stays queued.
    // `stopping` is asked between two chunks of 500 numbers: once it says true the answer ends there
    // (stopped_at: the first number not answered), so that a stop or reload does not wait for it.
    struct ReplayAnswer {
        std::size_t replayed = 0, queued = 0, lost = 0, lost_messages = 0, ignored = 0;
        std::size_t snapshots = 0;    // start snapshots sent again after their starts
        std::int64_t stopped_at = 0;  // 0 if answered whole
    };
    ReplayAnswer answer(const ReplayRequest& request, TimePoint now,
                        const std::function<bool()>& stopping = {});
    // Reads a start snapshot by its path relative to the evidence folder, if it is still there.
    // Snapshots go unnumbered, so the room cannot ask for one; with a reader, a replayed `start`
    // is followed by its snapshot again (a broker that lost both sent back only the start). Set
    // before start().
    using SnapshotReader = std::function<std::optional<std::string>(const std::string& relative)>;
    void set_snapshot_reader(SnapshotReader reader) { snapshot_reader_ = std::move(reader); }
    // The stream's id, when it began (if known), and the highest number the broker acknowledged
    // (for the gateway message).
    const std::string& stream() const { return store_.stream(); }
    std::optional<TimePoint> stream_started() const { return store_.stream_started(); }
    std::int64_t acknowledged() const { return acknowledged_.load(); }

    // The events the previous run recorded as open and never ended (it crashed), each as an end at
    // `now` with `reason`, for the caller to submit before anything can open events. A record that
    // cannot be read is logged and forgotten; if the store cannot be read the error is logged and
    // those events are ended at a later start.
    // `except`: events still open on purpose (a reload hands them to the next run).
    std::vector<events::Event> left_open(TimePoint now, const std::string& reason,
                                         const std::set<std::string>& except = {});
    // The clips whose starts the previous run committed and whose reports it never did (it died
    // within clip_post of the start), each as a report with `error` and the path the start named
    // (for the caller to look at, and delete what a crash left there); the report takes the record
    // out once submitted. Unreadable records and a failing store as for left_open().
    std::vector<events::ClipReport> clips_left_pending(const std::string& error);

    void start();
    // Gives the queue up to `drain` to empty while connected, then stops the sender. What is left
    // stays in the store for the next start.
    void stop(std::chrono::milliseconds drain);

    std::size_t depth() const { return store_.size() + overflow_.size(); }
    std::size_t in_memory() const { return overflow_.size(); }
    std::uint64_t dropped() const { return store_.dropped_total() + overflow_.dropped_total(); }
    std::uint64_t store_errors() const { return store_errors_.load(); }
    // Set while the store fails (since its last failure, until an append succeeds), for readiness.
    std::optional<std::string> store_problem() const;
    std::uint64_t refused() const { return store_.refused_total(); }
    std::uint64_t delivered() const { return delivered_.load(); }
    // Messages moved aside because the broker kept refusing them (SqliteStore::bury).
    std::uint64_t dead() const { return store_.dead_total(); }
    // The messages moved aside, newest first (GET /api/outbox/dead), and putting them back in the
    // queue once the broker takes them (POST /api/outbox/requeue): how many went back.
    std::vector<SqliteStore::DeadMessage> dead_messages(std::size_t limit) const {
        return store_.dead_messages(limit);
    }
    std::size_t requeue_dead();
    // SqliteStore::latest_numbered; nothing when the store cannot be read (said in the log).
    std::vector<std::string> latest_numbered(const std::string& topic, std::size_t limit,
                                             const std::string& containing = {}) const;
    // SqliteStore::numbered_of_event; nothing when the store cannot be read (said in the log).
    std::vector<std::string> numbered_of_event(const std::string& topic, const std::string& event_id,
                                               std::size_t limit) const;

private:
    bool accept(Message message, bool numbered);
    // Enqueues a replay's answers in order, in one transaction of the store (thousands at once, where
    // one sync to the disk each would take minutes on an SD card); returns how many were accepted.
    // Never into the memory overflow: throws StoreError instead.
    std::size_t queue_answers(std::vector<Message> messages);
    void queue_snapshots(const std::vector<std::pair<std::string, std::string>>& snapshots,
                         const std::function<bool()>& stopping, ReplayAnswer& a);
    static void note_snapshot(const std::string& payload,
                              std::vector<std::pair<std::string, std::string>>& out);
    void number(Message& message);  // caller holds enqueue_mutex_
    void run();
    void set_aside(const Message& head, int losses);
    enum class Appended { stored, refused, store_failed };
    Appended append(Message& message);
    bool keep_in_memory(Message message);
    void flush_overflow();  // caller holds enqueue_mutex_
    void store_failed(const std::string& error);
    void store_recovered();
    std::optional<Message> next();
    void pause(std::chrono::milliseconds how_long);
    // Applies to the store what it refused while it failed: the records of the ends and clip reports
    // delivered from memory (unsettled_), the removal of messages sent (unremoved_). Sender thread, or
    // after it stopped; what the store still refuses waits for the next call.
    void settle_with_store();

    SqliteStore& store_;
    publish::MqttLink& link_;
    publish::Topics topics_;
    std::string site_;
    std::shared_ptr<spdlog::logger> log_;
    LogThrottle refused_lines_, dropped_lines_;  // a full queue's lines (the counters count each)
    SnapshotReader snapshot_reader_;

    static const Overflow::Limits kOverflowLimits;
    Overflow overflow_;
    std::mutex enqueue_mutex_;
    // The last stream number given (under enqueue_mutex_): ahead of the store's while messages wait
    // in memory for it.
    std::int64_t last_stream_seq_;
    std::atomic<std::int64_t> acknowledged_;  // written by the sender thread
    std::atomic<std::uint64_t> store_errors_{0};
    mutable std::mutex problem_mutex_;
    std::string store_problem_;  // the last error while the store fails, empty when it works

    std::mutex mutex_;
    std::condition_variable cv_;
    bool stop_ = false;
    std::uint64_t submissions_ =
        0;  // under mutex_: messages accepted so far, so the sender waits for new ones
    std::atomic<std::uint64_t> delivered_{0};
    // The smallest message moved aside since start (sender thread only).
    std::size_t smallest_refused_ = std::numeric_limits<std::size_t>::max();
    std::atomic<bool> forgive_refused_{false};  // set by requeue_dead(), read by the sender thread
    // An end or a clip report delivered from memory took its mark with it, while the start it closes
    // may be in the store's records: without these, the next start would send it again (a clip's
    // as "gateway restarted before the clip was recorded", over the room's true report).
    struct Unsettled {
        bool clip;  // else an event's end
        std::string id;
    };
    std::vector<Unsettled> unsettled_;  // sender thread only (and stop(), after it)
    // Stored messages the broker acknowledged that the failing store could not remove yet, in seq
    // order: skipped (the queue goes on after the last of them) and removed once it works. Sending the
    // head again and again instead flooded the broker with thousands of copies a second while the
    // disk was full, and nothing behind it went out.
    std::vector<std::int64_t> unremoved_;  // sender thread only (and stop(), after it)
    SqliteStore::Sent unremoved_after_;    // where unremoved_ leaves each class's queue off
    // Numbered messages delivered from memory, for the sent table once the store works (else a
    // replay request would find them lost). Sender thread only (and stop(), after it).
    std::vector<Message> sent_from_memory_;
    std::thread thread_;
};

}  // namespace kg::outbox
