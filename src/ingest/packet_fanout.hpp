#pragma once
// One camera's demuxed packets handed to every output that wants them (clip ring, HLS, ...):
// the camera is read once, whatever the number of outputs.

#include <vector>

#include "ingest/ffmpeg_input.hpp"

namespace kg::ingest {

class PacketFanout final : public PacketObserver {
public:
    // Outputs are added before the worker starts; each must not block.
    void add(PacketObserver* observer) { observers_.push_back(observer); }
    bool empty() const { return observers_.empty(); }

    void on_stream_opened(const AVStream& stream) override {
        for (auto* o : observers_) o->on_stream_opened(stream);
    }
    void on_packet(const AVPacket& packet, const AVStream& stream) override {
        for (auto* o : observers_) o->on_packet(packet, stream);
    }
    void on_stream_closed() override {
        for (auto* o : observers_) o->on_stream_closed();
    }

private:
    std::vector<PacketObserver*> observers_;
};

}  // namespace kg::ingest
