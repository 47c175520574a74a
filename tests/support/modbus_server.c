/* A real Modbus server for the tests (libmodbus in server mode), over TCP or RTU:
 *
 *   kg-test-modbus-server --tcp PORT
 *   kg-test-modbus-server --rtu /dev/pts/N [--baud 9600] [--unit 1]
 *
 * Serves 100 holding and 100 input registers (the same values in both tables): over TCP to any unit
 * id, over RTU to its unit id (a serial line is shared, so RTU devices answer only their own).
 * Reads commands from standard input, one per line, so a test can change the world:
 *   set ADDR VALUE      write a 16-bit register (VALUE may be negative: stored as two's complement)
 *   silent 1|0          stop / resume answering requests (a device that goes quiet)
 * Prints READY when serving; exits on EOF of standard input or SIGTERM. */
#include <errno.h>
#include <modbus/modbus.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/select.h>
#include <unistd.h>

static int handle_command(modbus_mapping_t *map, int *silent) {
    char line[128];
    if (fgets(line, sizeof line, stdin) == NULL) return -1;
    int addr, value;
    if (sscanf(line, "set %d %d", &addr, &value) == 2 && addr >= 0 && addr < 100) {
        map->tab_registers[addr] = (uint16_t)value;
        map->tab_input_registers[addr] = (uint16_t)value;
    } else if (sscanf(line, "silent %d", &value) == 1) {
        *silent = value;
    } else {
        fprintf(stderr, "kg-test-modbus-server: unknown command: %s", line);
    }
    printf("OK\n");
    fflush(stdout);
    return 0;
}

int main(int argc, char **argv) {
    const char *tcp_port = NULL, *rtu_device = NULL;
    int baud = 9600, unit = 1;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--tcp") == 0) tcp_port = argv[i + 1];
        else if (strcmp(argv[i], "--rtu") == 0) rtu_device = argv[i + 1];
        else if (strcmp(argv[i], "--baud") == 0) baud = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--unit") == 0) unit = atoi(argv[i + 1]);
    }
    if ((tcp_port == NULL) == (rtu_device == NULL)) {
        fprintf(stderr, "usage: kg-test-modbus-server --tcp PORT | --rtu DEVICE [--baud N]\n");
        return 2;
    }
    modbus_mapping_t *map = modbus_mapping_new(0, 0, 100, 100);
    modbus_t *ctx = tcp_port ? modbus_new_tcp("127.0.0.1", atoi(tcp_port)) : modbus_new_rtu(rtu_device, baud, 'N', 8, 1);
    if (ctx == NULL || map == NULL) return 1;
    int listener = -1, client = -1, silent = 0;
    if (tcp_port) {
        listener = modbus_tcp_listen(ctx, 4);
        if (listener < 0) {
            fprintf(stderr, "kg-test-modbus-server: listen: %s\n", modbus_strerror(errno));
            return 1;
        }
    } else {
        modbus_set_slave(ctx, unit);
        if (modbus_connect(ctx) < 0) {
            fprintf(stderr, "kg-test-modbus-server: open %s: %s\n", rtu_device, modbus_strerror(errno));
            return 1;
        }
        client = modbus_get_socket(ctx);
    }
    printf("READY\n");
    fflush(stdout);

    uint8_t query[MODBUS_TCP_MAX_ADU_LENGTH];
    for (;;) {
        fd_set fds;
        FD_ZERO(&fds);
        FD_SET(0, &fds);
        int maxfd = 0;
        if (listener >= 0 && client < 0) {
            FD_SET(listener, &fds);
            maxfd = listener;
        }
        if (client >= 0) {
            FD_SET(client, &fds);
            if (client > maxfd) maxfd = client;
        }
        if (select(maxfd + 1, &fds, NULL, NULL, NULL) < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (FD_ISSET(0, &fds) && handle_command(map, &silent) < 0) break;
        if (listener >= 0 && client < 0 && FD_ISSET(listener, &fds)) {
            client = modbus_tcp_accept(ctx, &listener);
            continue;
        }
        if (client >= 0 && FD_ISSET(client, &fds)) {
            int n = modbus_receive(ctx, query);
            if (n > 0) {
                if (!silent) modbus_reply(ctx, query, n, map);
            } else if (n < 0 && tcp_port) {
                close(client);  /* the gateway hung up: wait for the next connection */
                client = -1;
            }
        }
    }
    modbus_mapping_free(map);
    modbus_close(ctx);
    modbus_free(ctx);
    return 0;
}
