/* A real RTSP server for the tests (GStreamer's gst-rtsp-server): serves H.264 MP4 files,
 * paced in real time, one mount per file.
 *
 *   kg-test-rtsp-server --port N --mount /cam=/path/clip.mp4 [--mount /other=/path2.mp4]
 *
 * Prints READY once listening; exits cleanly on SIGINT/SIGTERM. */
#include <glib-unix.h>
#include <gst/gst.h>
#include <gst/rtsp-server/rtsp-server.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static gboolean on_signal(gpointer loop) {
    g_main_loop_quit((GMainLoop *)loop);
    return G_SOURCE_REMOVE;
}

int main(int argc, char **argv) {
    gst_init(&argc, &argv);
    const char *port = NULL;
    GstRTSPServer *server = gst_rtsp_server_new();
    GstRTSPMountPoints *mounts = gst_rtsp_server_get_mount_points(server);
    int n_mounts = 0;

    for (int i = 1; i < argc; ++i) {
        if (strcmp(argv[i], "--port") == 0 && i + 1 < argc) {
            port = argv[++i];
        } else if (strcmp(argv[i], "--mount") == 0 && i + 1 < argc) {
            const char *spec = argv[++i];
            const char *eq = strchr(spec, '=');
            if (eq == NULL || spec[0] != '/') {
                fprintf(stderr, "kg-test-rtsp-server: --mount wants /path=file.mp4, got %s\n", spec);
                return 2;
            }
            gchar *path = g_strndup(spec, (gsize)(eq - spec));
            gchar *launch = g_strdup_printf(
                "( filesrc location=\"%s\" ! qtdemux ! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 )",
                eq + 1);
            GstRTSPMediaFactory *factory = gst_rtsp_media_factory_new();
            gst_rtsp_media_factory_set_launch(factory, launch);
            gst_rtsp_media_factory_set_shared(factory, FALSE);  /* each client plays from the start */
            gst_rtsp_mount_points_add_factory(mounts, path, factory); /* takes the factory */
            g_free(launch);
            g_free(path);
            ++n_mounts;
        } else {
            fprintf(stderr, "usage: kg-test-rtsp-server --port N --mount /path=file.mp4 [...]\n");
            return 2;
        }
    }
    if (port == NULL || n_mounts == 0) {
        fprintf(stderr, "usage: kg-test-rtsp-server --port N --mount /path=file.mp4 [...]\n");
        return 2;
    }
    g_object_unref(mounts);
    gst_rtsp_server_set_address(server, "127.0.0.1");
    gst_rtsp_server_set_service(server, port);

    GMainLoop *loop = g_main_loop_new(NULL, FALSE);
    if (gst_rtsp_server_attach(server, NULL) == 0) {
        fprintf(stderr, "kg-test-rtsp-server: cannot listen on 127.0.0.1:%s\n", port);
        return 1;
    }
    g_unix_signal_add(SIGINT, on_signal, loop);
    g_unix_signal_add(SIGTERM, on_signal, loop);
    printf("READY\n");
    fflush(stdout);
    g_main_loop_run(loop);

    g_main_loop_unref(loop);
    g_object_unref(server);
    return 0;
}
