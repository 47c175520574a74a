// A real RTSP server for the end-to-end tests (GStreamer's gst-rtsp-server): serves H.264 and H.265
// MP4 files (and MPEG-TS files, `.ts`: a stream whose picture size changes midway, as a camera's
// does when its settings change, can only be one), paced in real time by the pipeline clock, one
// mount per file. Every client plays its file from the start (the factories are not shared). Each file's
// codec is read from the file itself, so a mount is spelt the same for both: many real cameras send H.265 by
// default.
//
//   kg-test-rtsp-server --port N [--auth user:password] [--drop-every K] --mount /cam=/path/clip.mp4
//                       [--mount /other=/path2.ts ...]
//
// --auth user:password: every mount asks for it (HTTP Basic, as cameras do besides Digest); a client
// without it, or with others, is answered 401 Unauthorized.
//
// --drop-every K: one RTP packet in K is never sent (after its sequence number is given), as a
// lossy network loses it; the mounts given after it only.
//
// Says "client connected" on stderr for each connection (a client's tries, counted by a test).
// Prints READY on stdout (flushed) once it listens on 127.0.0.1:N; on SIGINT/SIGTERM it closes its
// clients and exits 0. Exit 2: bad arguments (a file that is missing or holds no H.264/H.265 video
// included); exit 1: cannot listen.
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

namespace {

constexpr const char* kUsage =
    "usage: kg-test-rtsp-server --port N [--auth user:password] [--drop-every K] --mount /path=file.mp4 "
    "[--mount ...]\n";

gboolean on_signal(gpointer loop) {
    g_main_loop_quit(static_cast<GMainLoop*>(loop));
    return G_SOURCE_CONTINUE;  // removed explicitly below
}

GstRTSPFilterResult close_client(GstRTSPServer*, GstRTSPClient*, gpointer) {
    return GST_RTSP_FILTER_REMOVE;  // closes the client's connection and tears its sessions down
}

struct PipelineStop {
    void operator()(GstElement* p) const {
        gst_element_set_state(p, GST_STATE_NULL);
        gst_object_unref(p);
    }
};
struct CapsUnref {
    void operator()(GstCaps* c) const { gst_caps_unref(c); }
};

bool is_ts(const std::string& file) {
    return file.size() > 3 && file.compare(file.size() - 3, 3, ".ts") == 0;
}

// The parser and payloader for the file's first video stream ("h264" or "h265"), or empty with the
// reason in `why`: the caps the demuxer gives that stream, read by prerolling the served pipeline's
// first half into a fakesink. Nothing is decoded (no decoder needed, as none is for serving).
std::string video_codec(const std::string& file, std::string& why) {
    const std::string launch = "filesrc location=\"" + file + "\" ! " +
                               (is_ts(file) ? "tsdemux" : "qtdemux name=d d.video_0") +
                               " ! fakesink name=sink";
    GError* error = nullptr;
    const std::unique_ptr<GstElement, PipelineStop> pipeline(gst_parse_launch(launch.c_str(), &error));
    if (error != nullptr || !pipeline) {
        why = error != nullptr ? error->message : "cannot build a pipeline";
        if (error != nullptr) g_error_free(error);
        return {};
    }
    gst_element_set_state(pipeline.get(), GST_STATE_PAUSED);
    if (gst_element_get_state(pipeline.get(), nullptr, nullptr, 10 * GST_SECOND) !=
        GST_STATE_CHANGE_SUCCESS) {
        why = is_ts(file) ? "not an MPEG-TS file with a video stream" : "not an MP4 file with a video stream";
        return {};
    }
    GstElement* sink = gst_bin_get_by_name(GST_BIN(pipeline.get()), "sink");
    GstPad* pad = gst_element_get_static_pad(sink, "sink");
    const std::unique_ptr<GstCaps, CapsUnref> caps(gst_pad_get_current_caps(pad));
    gst_object_unref(pad);
    gst_object_unref(sink);
    const std::string name = caps && gst_caps_get_size(caps.get()) > 0
                                 ? gst_structure_get_name(gst_caps_get_structure(caps.get(), 0))
                                 : "";
    if (name == "video/x-h264") return "h264";
    if (name == "video/x-h265") return "h265";
    why = "its video is " + (name.empty() ? std::string("of no known kind") : name) + ", not H.264 or H.265";
    return {};
}

// Drops one RTP packet in `every` (a counter per client's media, as each client has its own).
struct Dropper {
    guint every = 0;
    guint64 seen = 0;
};

bool drop_this(Dropper& d) { return ++d.seen % d.every == 0; }

GstPadProbeReturn drop_some(GstPad*, GstPadProbeInfo* info, gpointer user_data) {
    auto& dropper = *static_cast<Dropper*>(user_data);
    if ((info->type & GST_PAD_PROBE_TYPE_BUFFER) != 0)
        return drop_this(dropper) ? GST_PAD_PROBE_DROP : GST_PAD_PROBE_OK;
    if ((info->type & GST_PAD_PROBE_TYPE_BUFFER_LIST) != 0) {
        // A payloader pushes the fragments of one NAL unit as a list.
        GstBufferList* list = gst_buffer_list_make_writable(GST_PAD_PROBE_INFO_BUFFER_LIST(info));
        for (guint i = 0; i < gst_buffer_list_length(list);) {
            if (drop_this(dropper)) {
                gst_buffer_list_remove(list, i, 1);
            } else {
                ++i;
            }
        }
        GST_PAD_PROBE_INFO_DATA(info) = list;
        if (gst_buffer_list_length(list) == 0) return GST_PAD_PROBE_DROP;
    }
    return GST_PAD_PROBE_OK;
}

void drop_from_payloader(GstRTSPMediaFactory*, GstRTSPMedia* media, gpointer every) {
    GstElement* element = gst_rtsp_media_get_element(media);
    GstElement* pay = gst_bin_get_by_name(GST_BIN(element), "pay0");
    if (pay != nullptr) {
        GstPad* src = gst_element_get_static_pad(pay, "src");
        auto* dropper = new Dropper{GPOINTER_TO_UINT(every), 0};
        gst_pad_add_probe(
            src, static_cast<GstPadProbeType>(GST_PAD_PROBE_TYPE_BUFFER | GST_PAD_PROBE_TYPE_BUFFER_LIST),
            drop_some, dropper, [](gpointer d) { delete static_cast<Dropper*>(d); });
        gst_object_unref(src);
        gst_object_unref(pay);
    }
    gst_object_unref(element);
}

void on_client_connected(GstRTSPServer*, GstRTSPClient*, gpointer) {
    std::fputs("client connected\n", stderr);
    std::fflush(stderr);
}

// Adds one `/path=file.mp4` mount; false (with a message) when the spec or the file is unusable.
// `with_auth`: only the role "user" (--auth) may open it.
bool add_mount(GstRTSPMountPoints* mounts, const char* spec, guint drop_every, bool with_auth) {
    const char* eq = std::strchr(spec, '=');
    if (eq == nullptr || spec[0] != '/' || eq == spec + 1 || eq[1] == '\0') {
        std::fprintf(stderr, "kg-test-rtsp-server: --mount wants /path=file.mp4, got '%s'\n", spec);
        return false;
    }
    const std::string path(spec, static_cast<std::size_t>(eq - spec));
    const std::string file(eq + 1);
    if (file.find('"') != std::string::npos || !g_file_test(file.c_str(), G_FILE_TEST_IS_REGULAR)) {
        std::fprintf(stderr, "kg-test-rtsp-server: '%s' is not a usable file\n", file.c_str());
        return false;
    }
    std::string why;
    const std::string codec = video_codec(file, why);
    if (codec.empty()) {
        std::fprintf(stderr, "kg-test-rtsp-server: '%s' cannot be served: %s\n", file.c_str(), why.c_str());
        return false;
    }
    // config-interval=1: the parameter sets again every second, in band, as cameras send them.
    const std::string launch = "( filesrc location=\"" + file + "\" ! " +
                               (is_ts(file) ? "tsdemux" : "qtdemux") + " ! " + codec + "parse ! rtp" + codec +
                               "pay name=pay0 pt=96 config-interval=1 )";
    GstRTSPMediaFactory* factory = gst_rtsp_media_factory_new();
    gst_rtsp_media_factory_set_launch(factory, launch.c_str());
    gst_rtsp_media_factory_set_shared(factory, FALSE);
    if (drop_every > 0)
        g_signal_connect(factory, "media-configure", G_CALLBACK(drop_from_payloader),
                         GUINT_TO_POINTER(drop_every));
    if (with_auth) {
        GstRTSPPermissions* permissions = gst_rtsp_permissions_new();
        gst_rtsp_permissions_add_role(permissions, "user", GST_RTSP_PERM_MEDIA_FACTORY_ACCESS, G_TYPE_BOOLEAN,
                                      TRUE, GST_RTSP_PERM_MEDIA_FACTORY_CONSTRUCT, G_TYPE_BOOLEAN, TRUE,
                                      nullptr);
        gst_rtsp_media_factory_set_permissions(factory, permissions);
        gst_rtsp_permissions_unref(permissions);
    }
    gst_rtsp_mount_points_add_factory(mounts, path.c_str(), factory);  // takes ownership of factory
    return true;
}

}  // namespace

int main(int argc, char** argv) {
    gst_init(&argc, &argv);

    const char* port = nullptr;
    GstRTSPServer* server = gst_rtsp_server_new();
    GstRTSPMountPoints* mounts = gst_rtsp_server_get_mount_points(server);
    int n_mounts = 0;
    guint drop_every = 0;
    bool args_ok = true;
    bool with_auth = false;
    for (int i = 1; i < argc && args_ok; ++i) {
        if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = argv[++i];
        } else if (std::strcmp(argv[i], "--auth") == 0 && i + 1 < argc && n_mounts == 0) {
            const std::string pair = argv[++i];
            const auto colon = pair.find(':');
            args_ok = colon != std::string::npos && colon > 0;
            if (args_ok) {
                GstRTSPAuth* auth = gst_rtsp_auth_new();
                GstRTSPToken* token =
                    gst_rtsp_token_new(GST_RTSP_TOKEN_MEDIA_FACTORY_ROLE, G_TYPE_STRING, "user", nullptr);
                gchar* basic =
                    gst_rtsp_auth_make_basic(pair.substr(0, colon).c_str(), pair.substr(colon + 1).c_str());
                gst_rtsp_auth_add_basic(auth, basic, token);
                g_free(basic);
                gst_rtsp_token_unref(token);
                gst_rtsp_server_set_auth(server, auth);
                g_object_unref(auth);
                with_auth = true;
            }
        } else if (std::strcmp(argv[i], "--mount") == 0 && i + 1 < argc) {
            args_ok = add_mount(mounts, argv[++i], drop_every, with_auth);
            ++n_mounts;
        } else if (std::strcmp(argv[i], "--drop-every") == 0 && i + 1 < argc) {
            const long every = std::strtol(argv[++i], nullptr, 10);
            args_ok = every >= 2;
            drop_every = static_cast<guint>(every);
        } else {
            args_ok = false;
        }
    }
    g_object_unref(mounts);
    if (!args_ok || port == nullptr || n_mounts == 0) {
        std::fputs(kUsage, stderr);
        g_object_unref(server);
        return 2;
    }

    gst_rtsp_server_set_address(server, "127.0.0.1");
    gst_rtsp_server_set_service(server, port);
    g_signal_connect(server, "client-connected", G_CALLBACK(on_client_connected), nullptr);
    const guint server_source = gst_rtsp_server_attach(server, nullptr);
    if (server_source == 0) {
        std::fprintf(stderr, "kg-test-rtsp-server: cannot listen on 127.0.0.1:%s\n", port);
        g_object_unref(server);
        return 1;
    }

    GMainLoop* loop = g_main_loop_new(nullptr, FALSE);
    const guint sigint = g_unix_signal_add(SIGINT, on_signal, loop);
    const guint sigterm = g_unix_signal_add(SIGTERM, on_signal, loop);
    std::printf("READY\n");
    std::fflush(stdout);

    g_main_loop_run(loop);

    g_source_remove(sigint);
    g_source_remove(sigterm);
    g_source_remove(server_source);  // stop accepting
    gst_rtsp_server_client_filter(server, close_client, nullptr);
    while (g_main_context_iteration(nullptr, FALSE)) {
    }
    g_main_loop_unref(loop);
    g_object_unref(server);
    std::fprintf(stderr, "kg-test-rtsp-server: stopped\n");
    return 0;
}
