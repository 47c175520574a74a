#include "ingest/camera_worker.hpp"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>
#include <optional>
#include <utility>

#include "common/backoff.hpp"
#include "ingest/frame_sampler.hpp"

namespace kg::ingest {

std::optional<std::string> stretch_warning(double camera_aspect, int width, int height) {
    if (camera_aspect <= 0 || width <= 0 || height <= 0) return std::nullopt;
    const double analysed = static_cast<double>(width) / height;
    if (std::abs(analysed / camera_aspect - 1.0) <= 0.05) return std::nullopt;
    const int keeps = std::max(2, static_cast<int>(std::lround(width / camera_aspect / 2.0)) * 2);
    return fmt::format(
        "its pictures ({:.2f}:1) are analysed at {}x{} ({:.2f}:1): stretched, in the checks' eyes and in "
        "snapshots; set analysis.height: {} to keep their shape",
        camera_aspect, width, height, analysed, keeps);
}

namespace {

// A wait in whole minutes, at least one: "tried again in 0 min" read as "now".
long minutes_said(std::chrono::steady_clock::duration d) {
    return std::max(1L, std::lround(std::chrono::duration<double>(d).count() / 60.0));
}

}  // namespace

CameraWorker::CameraWorker(const config::Camera& camera, LatestFrame& out, CameraStats& stats,
                           LoginGate& logins, std::function<void()> on_frame,
                           std::shared_ptr<spdlog::logger> log)
    : camera_(camera),
      out_(out),
      stats_(stats),
      logins_(logins),
      on_frame_(std::move(on_frame)),
      log_(std::move(log)),
      shown_url_(without_password(camera_.url)),
      failures_(std::chrono::minutes(kFailureSummaryMinutes)) {}

CameraWorker::~CameraWorker() { stop(); }

void CameraWorker::start() {
    thread_ = std::thread([this] { run(); });
}

void CameraWorker::stop() {
    {
        std::lock_guard lock(wait_mutex_);
        stop_ = true;
    }
    wait_cv_.notify_all();
    if (thread_.joinable()) thread_.join();
}

bool CameraWorker::wait_for(std::chrono::steady_clock::duration d) {
    std::unique_lock lock(wait_mutex_);
    return !wait_cv_.wait_for(lock, d, [this] { return stop_.load(); });
}

void CameraWorker::run() {
    Backoff backoff(camera_.input.reconnect_min, camera_.input.reconnect_max);
    const InputOptions options{camera_.url, camera_.input.transport, camera_.input.timeout,
                               camera_.analysis.keyframes_only, camera_.input.format};
    bool first = true;
    const std::string login = LoginGate::login_of(camera_.url);
    while (!stop_) {
        auto pass = wait_for_login(login);
        if (!pass) break;
        if (!first) stats_.reconnect(std::chrono::steady_clock::now());
        first = false;

        FfmpegInput input(options, stop_);
        input.set_packet_observer(observer_);
        input.set_frame_observer(frame_observer_);
        Delivered delivered;
        bool file_ended = false;
        bool said = true;  // this try's end was logged: so is the retry
        std::optional<LoginGate::Pass::Refusal> refused;
        bool forbidden = false;  // refused with a 403: the user and password taken, not for this stream
        // A try that failed before any picture came, the same way as the tries before it, is
        // logged the first few times, then summarised (failures_); one after pictures always is.
        const auto failed = [&](spdlog::level::level_enum level, const std::string& what) {
            if (delivered.first) {
                log_->log(level, "{}: {}", shown_url_, what);
                return;
            }
            const auto v = failures_.failed(what);
            said = v.log;
            if (!v.log) return;
            log_->log(level, "{}: {}{}", shown_url_, what, failures_.note(v));
        };
        // A failure after pictures is also a break of the stream (unstable); one before is not.
        const auto record = [&](FailureCause cause, const std::string& why) {
            if (delivered.first) stats_.broke(std::chrono::steady_clock::now());
            stats_.failed(cause, why, Clock::now());
        };
        try {
            input.open();
            pass->accepted();
            stats_.connected();
            if (!failures_.quiet()) log_->info("connected to {}: {}", shown_url_, input.describe());
            const bool ended = read_frames(input, delivered) == StreamEnd::end_of_file;
            // Only a file ends; a network or device stream that ends has gone away: reconnect.
            file_ended = ended && input.kind() == SourceKind::file;
            if (ended && !file_ended) {
                record(FailureCause::dropped, "the stream ended");
                failed(spdlog::level::warn, "the stream ended");
            } else if (file_ended) {
                stats_.failed(FailureCause::ended, "end of file (not looping)", Clock::now());
            } else {
                stats_.disconnected();
            }
        } catch (const IngestError& e) {
            if (!stop_) {  // a stop interrupts the read: not the camera's fault, and not said
                if (e.kind == IngestError::Kind::stall) stats_.stall(std::chrono::steady_clock::now());
                record(e.cause, e.what());
                failed(spdlog::level::warn, e.what());
                if (e.cause == FailureCause::unauthorized) {
                    refused = pass->refused(std::chrono::steady_clock::now(), e.forbidden);
                    forbidden = e.forbidden;
                } else {
                    pass->unanswered(e.cause, e.what());
                }
            } else {
                stats_.disconnected();
            }
        } catch (const std::exception& e) {
            // Not the stream's fault as far as we know (out of memory in a frame buffer, a packet
            // observer that failed): the connection is dropped and made again, the gateway goes on.
            if (!stop_) {
                record(FailureCause::error, e.what());
                failed(spdlog::level::err, e.what());
                pass->unanswered(FailureCause::error, e.what());
            } else {
                stats_.disconnected();
            }
        }
        // A try that ended without an answer about the login: the next camera of the login may try
        // now, not after this one's back-off.
        pass.reset();
        // What the last reads lost (before a stall, the end, or a first frame that never came).
        count_lost(input, delivered, std::chrono::steady_clock::now(), false);
        // Also at a stop that interrupted the read, as at one between two reads: the stream's
        // observers (HLS, FLV, RTMP, the masker) end it the same way whichever way it stopped.
        if (observer_ != nullptr) observer_->on_stream_closed();
        if (stop_) break;
        if (file_ended) {
            // A file without `loop` is played once; the camera then reads as offline.
            log_->info("end of file {}; not looping", shown_url_);
            std::unique_lock lock(wait_mutex_);
            wait_cv_.wait(lock, [this] { return stop_.load(); });
            break;
        }
        if (delivered.first && *delivered.last - *delivered.first > camera_.input.reconnect_healthy_after)
            backoff.reset();
        auto delay = backoff.next();
        if (refused) {
            // Each refused login counts against the camera's account (see LoginGate): tried again 1,
            // 2, 4, 8, then every 15 minutes, not every input.reconnect.max; a reload after the URL is
            // mended tries at once.
            const auto wait = refused->next_try - std::chrono::steady_clock::now();
            if (wait > delay) {
                delay = std::chrono::ceil<std::chrono::milliseconds>(wait);
                const auto times = refused->in_a_row > 1
                                       ? fmt::format(" {} times in a row", refused->in_a_row)
                                       : std::string();
                if (said && forbidden) {
                    log_->warn(
                        "{}: the camera refused this stream to the user{} (403: the user may not view it); "
                        "tried again in {} min: give the user the right on the camera, or mend the URL, "
                        "and reload",
                        shown_url_, times, minutes_said(delay));
                } else if (said) {
                    log_->warn(
                        "{}: the camera refused the user or password{}; tried again in {} min (a camera "
                        "locks the account after a few refused logins{}): mend the URL's user or password "
                        "and reload",
                        shown_url_, times, minutes_said(delay),
                        refused->camera_only ? "; the other cameras of this login go on" : "");
                }
                said = false;  // the wait is said with the refusal, not again as a reconnect
                login_wait_said_ = refused->next_try;
            }
        }
        if (said) log_->info("reconnecting in {} ms", delay.count());
        if (!wait_for(delay)) break;
    }
}

std::optional<LoginGate::Pass> CameraWorker::wait_for_login(const std::string& login) {
    while (!stop_) {
        const auto now = std::chrono::steady_clock::now();
        auto entry = logins_.enter(login, camera_.id, now);
        if (auto* pass = std::get_if<LoginGate::Pass>(&entry)) {
            // Its turn passed on by a camera the recorder did not answer: that failure is this
            // camera's cause while it tries (up to input.timeout), as it was the waiting cameras'.
            // The camera holding the turn when the outage was found went without one (the 64th
            // session's review: 1 of 8 offline alerts of an unreachable NVR).
            if (const auto& before = pass->after_unanswered(); before && before->number != unanswered_said_) {
                unanswered_said_ = before->number;
                stats_.failed(
                    before->cause,
                    fmt::format("trying now, after camera '{}' of its login (tried by one camera at a "
                                "time until it is known to work): {}",
                                before->camera, before->text),
                    Clock::now(), now);
            }
            return std::move(*pass);
        }
        const auto& wait = std::get<LoginGate::Wait>(entry);
        if (wait.refused_until && login_wait_said_ != *wait.refused_until) {
            // Once a wait, however often the camera asks during it.
            login_wait_said_ = *wait.refused_until;
            const auto who = wait.refused == camera_.id ? std::string("this camera")
                                                        : fmt::format("camera '{}'", wait.refused);
            const auto why = fmt::format(
                "not tried while its login is refused: {} was refused {} at this address{}; tried again in "
                "{} "
                "min{} (a camera locks the account after a few refused logins)",
                who, wait.camera_only ? "this stream" : "this user and password",
                wait.refusals > 1 ? fmt::format(" {} times in a row", wait.refusals) : "",
                minutes_said(*wait.refused_until - now),
                wait.camera_only ? "" : ", by one camera of the login at a time");
            stats_.failed(FailureCause::unauthorized, why, Clock::now(), now);
            log_->warn("{}: {}", shown_url_, why);
        } else if (!wait.refused_until && wait.unanswered && wait.unanswered->number != unanswered_said_ &&
                   wait.unanswered->camera != camera_.id) {
            // Waiting for its first try while another camera of its login finds no answer: that
            // camera's failure is this one's cause meanwhile (the room saw an outage without one).
            unanswered_said_ = wait.unanswered->number;
            stats_.failed(wait.unanswered->cause,
                          fmt::format("not tried yet (its login is tried by one camera at a time until it is "
                                      "known to work): camera '{}': {}",
                                      wait.unanswered->camera, wait.unanswered->text),
                          Clock::now(), now);
        }
        if (!wait_for(wait.until - now)) break;
    }
    return std::nullopt;
}

void CameraWorker::count_lost(const FfmpegInput& input, Delivered& delivered,
                              std::chrono::steady_clock::time_point now, bool say) {
    if (input.packets_lost() > delivered.lost_counted) {
        const auto added = input.packets_lost() - delivered.lost_counted;
        stats_.packets_lost(added);
        lost_ += added;
        delivered.lost_counted = input.packets_lost();
    }
    // At most every 10 minutes: a lossy link loses some all the time.
    constexpr auto kSayEvery = std::chrono::minutes(10);
    if (!say || lost_ == lost_said_ || (lost_said_at_ && now - *lost_said_at_ < kSayEvery)) return;
    log_->warn(
        "{}: {} RTP packets lost on the network {} (pictures smear or freeze until the next key frame; "
        "input.transport: tcp has them resent)",
        shown_url_, lost_ - lost_said_,
        lost_said_at_ ? fmt::format("in the last {:.0f} min",
                                    std::chrono::duration<double>(now - *lost_said_at_).count() / 60.0)
                      : std::string("since the camera was first read"));
    lost_said_ = lost_;
    lost_said_at_ = now;
}

void CameraWorker::say_damaged(std::chrono::steady_clock::time_point now) {
    // At most every 10 minutes, as lost packets: a damaged stream damages pictures all the time.
    constexpr auto kSayEvery = std::chrono::minutes(10);
    if (!damaged_since_) damaged_since_ = now;
    if (now - *damaged_since_ < (damaged_said_ ? kSayEvery : std::chrono::seconds(10))) return;
    if (damaged_ > 0) {
        log_->warn(
            "{}: {} of {} pictures in the last {:.0f} s were damaged (parts the decoder could not decode, "
            "filled in from around them: smeared pictures, checks that see less): the stream is damaged on "
            "the way "
            "(packets lost or corrupted) or by the camera's encoder",
            shown_url_, damaged_, decoded_, std::chrono::duration<double>(now - *damaged_since_).count());
        damaged_said_ = true;
    }
    damaged_ = decoded_ = 0;
    damaged_since_ = now;
}

CameraWorker::StreamEnd CameraWorker::read_frames(FfmpegInput& input, Delivered& delivered) {
    const bool paced = input.kind() == SourceKind::file && camera_.input.realtime;
    // A live source keeps to the wall clock. One whose stream time runs ahead of it (an HTTP URL to
    // a recording) comes as fast as it downloads, and sampled by its own
    // time it was analysed at 40 pictures a second for a camera set to 2, a core taken from every
    // other camera. Not paced (waiting in the read loop delayed live cameras that burst at connect
    // or whose clocks run fast, packets for the public feed and clips with them): a network
    // source's pictures are also sampled at most twice the rate by the wall clock, and one far
    // ahead is said once.
    const bool network = input.kind() == SourceKind::network;
    const auto min_gap = std::chrono::duration_cast<std::chrono::steady_clock::duration>(
        std::chrono::duration<double>(0.5 / camera_.analysis.fps));
    constexpr double kFarAhead = 30.0;  // seconds of stream time ahead of the wall clock
    std::optional<std::chrono::steady_clock::time_point> last_sampled;
    std::optional<std::pair<std::chrono::steady_clock::time_point, double>> first_frame;
    bool said_ahead = false;
    // A source whose clock stops or crawls (its stamps repeating, then one tick each): sampled by its
    // own time, it was analysed about once in 30 minutes, the camera online and nothing said (the
    // ingest review). Judged over windows of 20 s of the wall clock: under half of it in stream
    // time in two windows running, its pictures are sampled by the wall clock until its clock runs
    // again. One window is not enough: a network pause the timeout allows ends in a backlog whose
    // first frame is old, and that window reads slow (the review of the first version of this).
    constexpr auto kClockWindow = std::chrono::seconds(20);
    std::optional<std::pair<std::chrono::steady_clock::time_point, double>> clock_window;
    int slow_windows = 0;
    bool by_wall = false;
    FrameSampler sampler(camera_.analysis.fps);
    // A plain value and a flag rather than an optional: g++ 12 cannot see that the optional is set
    // before it is read and warned on every build (-Wmaybe-uninitialized).
    std::chrono::steady_clock::time_point pace_wall{};
    bool pacing = false;
    double pace_stream = 0.0, previous_t = 0.0;
    std::uint64_t seq = 0;
    std::uint64_t decode_errors_reported = 0, damaged_reported = 0, jumps_reported = 0, steps_reported = 0,
                  steps_logged = 0, picture_changes_reported = 0;
    double steps_seconds_logged = 0.0;
    const int width = camera_.analysis.width, height = camera_.analysis.height;

    while (!stop_) {
        if (!input.next_frame()) {
            if (camera_.input.loop && input.rewind()) {
                sampler.reset();
                pacing = false;
                continue;
            }
            return StreamEnd::end_of_file;
        }
        const auto now = Clock::now();
        stats_.frame_decoded(now);
        delivered.last = std::chrono::steady_clock::now();
        if (!delivered.first) {
            delivered.first = delivered.last;
            // Pictures again after tries that were only summarised: said, or the log would end on
            // the failure.
            if (const auto tries = failures_.succeeded(); tries >= RepeatedFailure::kShown)
                log_->info("{}: pictures again after {} failed tries: {}", shown_url_, tries,
                           input.describe());
        }
        if (input.decode_errors() != decode_errors_reported) {
            stats_.decode_errors(input.decode_errors() - decode_errors_reported);
            decode_errors_reported = input.decode_errors();
        }
        ++decoded_;
        if (input.frames_damaged() != damaged_reported) {
            stats_.frames_damaged(input.frames_damaged() - damaged_reported);
            damaged_ += input.frames_damaged() - damaged_reported;
            damaged_reported = input.frames_damaged();
        }
        say_damaged(*delivered.last);
        count_lost(input, delivered, *delivered.last, true);
        if (input.timeline_jumps() != jumps_reported) {
            // Absorbed at ingest (the outputs carry on), but worth knowing: a camera whose clock keeps
            // jumping has a fault (its NTP, its firmware, the NVR in front of it).
            const auto added = input.timeline_jumps() - jumps_reported;
            const double s = input.last_jump_seconds();
            log_->warn(
                "timestamps jumped {} by {:.3f} s without a reconnect{}; the outputs continue on one "
                "timeline",
                s < 0 ? "back" : "ahead", std::abs(s),
                added > 1 ? fmt::format(" ({} jumps since the last picture)", added) : "");
            stats_.timestamp_jumps(added);
            jumps_reported = input.timeline_jumps();
        }
        if (input.picture_changes() != picture_changes_reported) {
            picture_changes_reported = input.picture_changes();
            log_->info(
                "the picture changed from {} within the connection (the camera's settings?); the "
                "clips and public streams start again with it",
                input.last_picture_change());
        }
        if (input.timeline_steps() != steps_reported) {
            // Counted with the jumps, as a camera whose clock keeps being corrected is worth a look.
            stats_.timestamp_jumps(input.timeline_steps() - steps_reported);
            steps_reported = input.timeline_steps();
        } else if (steps_reported != steps_logged) {
            // A clock set back by less than a second: an NTP client stepping the camera's clock (at
            // its boot, or after drift) is routine, not a fault, so info, not a warning. Logged once
            // the steps stop: a source that repeats a time frame after frame until its clock catches
            // up (as FFmpeg relaying a stepped stream over RTP was seen to) makes one step a frame,
            // and that is still one correction of the camera's clock, not one a frame in the log.
            const auto steps = steps_reported - steps_logged;
            const double seconds = input.timeline_steps_seconds() - steps_seconds_logged;
            log_->info(
                "timestamps stepped back by {:.3f} s without a reconnect (the camera's clock was set "
                "back){}; absorbed, the outputs continue on one timeline",
                std::abs(seconds), steps > 1 ? fmt::format(" in {} steps", steps) : "");
            steps_logged = steps_reported;
            steps_seconds_logged = input.timeline_steps_seconds();
        }
        double t = input.frame_time();
        const auto steady_now = std::chrono::steady_clock::now();
        if (t < 0) t = std::chrono::duration<double>(steady_now.time_since_epoch()).count();

        if (paced) {
            // Like `ffmpeg -re`: a file plays at its own speed, as a camera would.
            // A jump of the file's clock (back, or far ahead) starts the pacing again from here:
            // measured from the previous frame, not from where the pacing started.
            if (!pacing || t < previous_t || t - previous_t > 60.0) {
                pacing = true;
                pace_wall = steady_now;
                pace_stream = t;
            }
            previous_t = t;
            const auto due = pace_wall + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                             std::chrono::duration<double>(t - pace_stream));
            if (due > steady_now && !wait_for(due - steady_now)) break;
        }
        if (network) {
            if (!first_frame) first_frame.emplace(steady_now, t);
            const double ahead = (t - first_frame->second) -
                                 std::chrono::duration<double>(steady_now - first_frame->first).count();
            if (ahead > kFarAhead && !said_ahead) {
                said_ahead = true;
                log_->warn(
                    "{}: its stream runs {:.0f} s ahead of real time (a recording, not a live camera?); "
                    "analysed at most at the analysis rate by the wall clock",
                    without_password(camera_.url), ahead);
            }
        }
        if (network) {
            if (!clock_window) clock_window.emplace(steady_now, t);
            const auto wall = steady_now - clock_window->first;
            if (wall >= kClockWindow) {
                const double rate = (t - clock_window->second) / std::chrono::duration<double>(wall).count();
                slow_windows = rate < 0.5 ? slow_windows + 1 : 0;
                if ((slow_windows >= 2) != by_wall) {
                    by_wall = slow_windows >= 2;
                    sampler.reset();
                    if (by_wall) {
                        log_->warn(
                            "{}: its stream's clock ran {:.0f} s in the last {:.0f} s (stopped or crawling: "
                            "a camera fault); its pictures are analysed by the wall clock",
                            shown_url_, t - clock_window->second,
                            std::chrono::duration<double>(wall).count());
                    } else {
                        log_->info("{}: its stream's clock runs again", shown_url_);
                    }
                }
                clock_window.emplace(steady_now, t);
            }
        }
        const double sampled_t =
            by_wall ? std::chrono::duration<double>(steady_now.time_since_epoch()).count() : t;
        if (!sampler.accept(sampled_t)) continue;
        if (network && last_sampled && steady_now - *last_sampled < min_gap) continue;
        last_sampled = steady_now;

        Frame& frame = out_.back();
        if (frame.image.rows != height || frame.image.cols != width)
            frame.image.create(height, width, CV_8UC3);
        if (!said_shape_) {
            said_shape_ = true;
            if (const auto warning = stretch_warning(input.display_aspect(), width, height))
                log_->warn("{}: {}", shown_url_, *warning);
        }
        input.scale_into(frame.image);
        frame.seq = ++seq;
        frame.time = Clock::now();
        frame.steady = std::chrono::steady_clock::now();
        frame.stream_time = t;
        frame.keyframe = input.frame_is_key();
        out_.publish();
        stats_.frame_sampled();
        stats_.frames_dropped(out_.dropped());
        if (on_frame_) on_frame_();
    }
    return StreamEnd::stopped;
}

}  // namespace kg::ingest
