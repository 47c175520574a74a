// A real RTSP server for the end-to-end tests (GStreamer's gst-rtsp-server): serves H.264 MP4 files,
// paced in real time by the pipeline clock, one mount per file. Every client plays its file from the
// start (the factories are not shared).
//
//   kg-test-rtsp-server --port N --mount /cam=/path/clip.mp4 [--mount /other=/path2.mp4 ...]
//
// Prints READY on stdout (flushed) once it listens on 127.0.0.1:N; on SIGINT/SIGTERM it closes its
// clients and exits 0. Exit 2: bad arguments; exit 1: cannot listen.
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>

#include <cstdio>
#include <cstring>
#include <string>

namespace {

constexpr const char* kUsage = "usage: kg-test-rtsp-server --port N --mount /path=file.mp4 [--mount ...]\n";

gboolean on_signal(gpointer loop) {
    g_main_loop_quit(static_cast<GMainLoop*>(loop));
    return G_SOURCE_CONTINUE;  // removed explicitly below
}

GstRTSPFilterResult close_client(GstRTSPServer*, GstRTSPClient*, gpointer) {
    return GST_RTSP_FILTER_REMOVE;  // closes the client's connection and tears its sessions down
}

// Adds one `/path=file.mp4` mount; false (with a message) when the spec or the file is unusable.
bool add_mount(GstRTSPMountPoints* mounts, const char* spec) {
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
    const std::string launch = "( filesrc location=\"" + file +
                               "\" ! qtdemux ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=1 )";
    GstRTSPMediaFactory* factory = gst_rtsp_media_factory_new();
    gst_rtsp_media_factory_set_launch(factory, launch.c_str());
    gst_rtsp_media_factory_set_shared(factory, FALSE);
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
    bool args_ok = true;
    for (int i = 1; i < argc && args_ok; ++i) {
        if (std::strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = argv[++i];
        } else if (std::strcmp(argv[i], "--mount") == 0 && i + 1 < argc) {
            args_ok = add_mount(mounts, argv[++i]);
            ++n_mounts;
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
