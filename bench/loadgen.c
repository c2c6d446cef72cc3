/* loadgen: an epoll HTTP stream reader for the live fan-out benchmark.
 *
 * Built by bench/live_fanout.py with `gcc -O2`.  Two modes:
 *
 *   loadgen read HOST PORT PATH CLIENTS RAMP_PER_S WARMUP_S MEASURE_S STALLED PROBES [RCVBUF]
 *       Opens CLIENTS HTTP/1.1 GETs (RAMP_PER_S new connections per second),
 *       reads and de-chunks every body, checks that each body starts on an
 *       MPEG-TS sync byte and that every 188th byte is 0x47, and counts bytes.
 *       After WARMUP_S seconds it measures for MEASURE_S seconds.  At the
 *       start of the measurement it opens STALLED connections that send the
 *       request and never read (4 KiB receive buffer), and during it PROBES
 *       short-lived joins, one at a time, timing each one's first body byte.
 *       Prints one line per client and per probe, then a summary, to stdout.
 *       RCVBUF (bytes, default 0 = the kernel's autotuning) fixes the readers'
 *       receive buffers: 2000 autotuned loopback sockets can push the kernel
 *       into TCP memory pressure, which drops packets for everybody.
 *
 *   loadgen blast PORT
 *       A C server that answers every request with an endless chunked body of
 *       TS-looking data as fast as the readers take it: used to measure the
 *       reader's own ceiling.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define TS 188
#define BUF (256 * 1024)

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

enum { S_CONNECTING, S_HEADERS, S_BODY, S_DONE };
enum { C_SIZE, C_EXT, C_SIZE_LF, C_DATA, C_DATA_CR, C_DATA_LF, C_END };

typedef struct {
    int fd;
    int state;
    int kind; /* 0 client, 1 stalled, 2 probe */
    char hdr[4096];
    int hdr_len;
    int chunked;
    int cstate;
    long chunk_left;
    long phase; /* body bytes seen modulo 188 */
    long long body;
    long long body_at_start;
    double t_sent, t_first;
    int align_errors;
    int first_checked;
    int closed_by_peer;
} conn_t;

static int ep, pep;
static struct sockaddr_in addr;
static char request[1024];
static int request_len;
static unsigned char rbuf[BUF];
static int rcvbuf;

static void body_bytes(conn_t *c, const unsigned char *p, long n) {
    if (n <= 0) return;
    if (c->t_first == 0) c->t_first = now();
    if (!c->first_checked) {
        c->first_checked = 1;
        if (p[0] != 0x47) c->align_errors++;
    }
    long i = (TS - c->phase) % TS;
    for (; i < n; i += TS)
        if (p[i] != 0x47) { c->align_errors++; break; }
    c->phase = (c->phase + n) % TS;
    c->body += n;
}

static void dechunk(conn_t *c, const unsigned char *p, long n) {
    if (!c->chunked) { body_bytes(c, p, n); return; }
    long i = 0;
    while (i < n) {
        switch (c->cstate) {
        case C_SIZE: {
            unsigned char ch = p[i++];
            int v = -1;
            if (ch >= '0' && ch <= '9') v = ch - '0';
            else if (ch >= 'a' && ch <= 'f') v = ch - 'a' + 10;
            else if (ch >= 'A' && ch <= 'F') v = ch - 'A' + 10;
            if (v >= 0) c->chunk_left = c->chunk_left * 16 + v;
            else if (ch == '\r') c->cstate = C_SIZE_LF;
            else if (ch == '\n') c->cstate = c->chunk_left ? C_DATA : C_END;
            else c->cstate = C_EXT;
            break;
        }
        case C_EXT:
            if (p[i++] == '\n') c->cstate = c->chunk_left ? C_DATA : C_END;
            break;
        case C_SIZE_LF:
            i++;
            c->cstate = c->chunk_left ? C_DATA : C_END;
            break;
        case C_DATA: {
            long take = n - i < c->chunk_left ? n - i : c->chunk_left;
            body_bytes(c, p + i, take);
            i += take;
            c->chunk_left -= take;
            if (c->chunk_left == 0) c->cstate = C_DATA_CR;
            break;
        }
        case C_DATA_CR:
            i++;
            c->cstate = C_DATA_LF;
            break;
        case C_DATA_LF:
            i++;
            c->cstate = C_SIZE;
            c->chunk_left = 0;
            break;
        case C_END:
            return;
        }
    }
}

static conn_t *open_conn(int kind) {
    conn_t *c = calloc(1, sizeof(conn_t));
    c->kind = kind;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0) { perror("socket"); exit(1); }
    if (kind == 1) {
        int small = 4096;
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    } else if (rcvbuf > 0) {
        setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    }
    c->t_sent = now();
    int r = connect(c->fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) { perror("connect"); exit(1); }
    struct epoll_event ev = {.events = EPOLLOUT, .data.ptr = c};
    epoll_ctl(kind == 2 ? pep : ep, EPOLL_CTL_ADD, c->fd, &ev);
    c->state = S_CONNECTING;
    return c;
}

static void close_conn(conn_t *c, int by_peer) {
    if (c->state == S_DONE) return;
    epoll_ctl(c->kind == 2 ? pep : ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = S_DONE;
    c->closed_by_peer = by_peer;
}

static void on_event(conn_t *c, uint32_t events) {
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { close_conn(c, 1); return; }
        if (write(c->fd, request, request_len) != request_len) { close_conn(c, 1); return; }
        c->t_sent = now();
        c->state = S_HEADERS;
        struct epoll_event ev = {.events = c->kind == 1 ? 0 : EPOLLIN, .data.ptr = c};
        epoll_ctl(c->kind == 2 ? pep : ep, EPOLL_CTL_MOD, c->fd, &ev);
        return;
    }
    if (c->kind == 1) return; /* stalled: never read */
    for (;;) {
        ssize_t n = recv(c->fd, rbuf, BUF, 0);
        if (n == 0) { close_conn(c, 1); return; }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            close_conn(c, 1);
            return;
        }
        unsigned char *p = rbuf;
        if (c->state == S_HEADERS) {
            long room = (long)sizeof c->hdr - 1 - c->hdr_len;
            long take = n < room ? n : room;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += take;
            c->hdr[c->hdr_len] = 0;
            char *end = strstr(c->hdr, "\r\n\r\n");
            if (!end) { if (room <= take) close_conn(c, 1); continue; }
            long hlen = end + 4 - c->hdr;
            if (strncmp(c->hdr + 9, "200", 3) != 0) { close_conn(c, 1); return; }
            c->chunked = strcasestr(c->hdr, "transfer-encoding: chunked") != NULL;
            c->state = S_BODY;
            long consumed = hlen - (c->hdr_len - take);
            p += consumed;
            n -= consumed;
        }
        dechunk(c, p, n);
        if (c->kind == 2 && c->t_first) { close_conn(c, 0); return; }
    }
}

static int run_read(int argc, char **argv) {
    if (argc < 11) { fprintf(stderr, "usage: loadgen read HOST PORT PATH CLIENTS RAMP WARMUP MEASURE STALLED PROBES\n"); return 2; }
    const char *host = argv[2];
    int port = atoi(argv[3]);
    const char *path = argv[4];
    int clients = atoi(argv[5]);
    double ramp = atof(argv[6]);
    double warmup = atof(argv[7]);
    double measure = atof(argv[8]);
    int stalled = atoi(argv[9]);
    int probes = atoi(argv[10]);
    rcvbuf = argc > 11 ? atoi(argv[11]) : 0;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    request_len = snprintf(request, sizeof request,
                           "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: loadgen\r\n\r\n", path, host, port);
    ep = epoll_create1(0);
    pep = epoll_create1(0);
    int total = clients + stalled + probes;
    conn_t **all = calloc(total, sizeof(conn_t *));
    int opened = 0, nstalled = 0, nprobes = 0;
    conn_t *probe = NULL;
    double t0 = now(), measure_start = -1, next_probe = 0;
    double probe_gap = probes ? measure / (probes + 1) : 0;
    struct epoll_event events[1024];
    struct rusage ru0, ru1;
    for (;;) {
        double t = now() - t0;
        int want = ramp > 0 ? (int)(t * ramp) + 1 : clients;
        while (opened < clients && opened < want) all[opened++] = open_conn(0);
        if (measure_start < 0 && t >= warmup) {
            measure_start = now();
            for (int i = 0; i < opened; i++) all[i]->body_at_start = all[i]->body;
            getrusage(RUSAGE_SELF, &ru0);
            for (; nstalled < stalled; nstalled++) all[clients + nstalled] = open_conn(1);
            next_probe = measure_start + probe_gap;
        }
        if (measure_start > 0) {
            double m = now();
            if (m - measure_start >= measure) break;
            if ((probe == NULL || probe->state == S_DONE) && nprobes < probes && m >= next_probe) {
                probe = all[clients + stalled + nprobes++] = open_conn(2);
                next_probe = m + probe_gap;
            }
        }
        /* Probes have their own epoll set, polled between small batches of
         * the readers' events, so that a probe's first byte is timed when it
         * arrives rather than after a thousand other sockets were read. */
        if (probe != NULL && probe->state != S_DONE) {
            int pn = epoll_wait(pep, events, 1, 0);
            if (pn > 0) on_event(probe, events[0].events);
        }
        int n = epoll_wait(ep, events, 16, 1);
        for (int i = 0; i < n; i++) on_event(events[i].data.ptr, events[i].events);
    }
    double m = now() - measure_start;
    getrusage(RUSAGE_SELF, &ru1);
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long long sum = 0;
    for (int i = 0; i < clients; i++) {
        conn_t *c = all[i];
        long long got = c->body - c->body_at_start;
        sum += got;
        printf("client %d %lld %.3f %d %d %lld\n", i, got,
               c->t_first ? (c->t_first - c->t_sent) * 1000 : -1.0, c->align_errors,
               c->closed_by_peer, c->body);
    }
    for (int i = 0; i < nprobes; i++) {
        conn_t *c = all[clients + stalled + i];
        printf("probe %d %.3f %d\n", i, c->t_first ? (c->t_first - c->t_sent) * 1000 : -1.0, c->align_errors);
    }
    int stalled_closed = 0;
    for (int i = 0; i < nstalled; i++) {
        conn_t *c = all[clients + i];
        /* A stalled connection the server aborted reports ECONNRESET. */
        char b;
        ssize_t r = recv(c->fd, &b, 1, MSG_PEEK | MSG_DONTWAIT);
        if (r == 0 || (r < 0 && errno != EAGAIN)) stalled_closed++;
    }
    printf("summary seconds %.3f bytes %lld cpu %.3f stalled_closed %d\n", m, sum, cpu, stalled_closed);
    return 0;
}

/* --- blast: the reader's ceiling ------------------------------------------ */

typedef struct {
    int fd;
    int sent_headers;
    long off;
} bconn_t;

static unsigned char blast_buf[65536 + 32];
static int blast_len;

static int run_blast(int argc, char **argv) {
    int port = argc > 2 ? atoi(argv[2]) : 0;
    int ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    int one = 1;
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    if (bind(ls, (struct sockaddr *)&a, sizeof a) < 0) { perror("bind"); return 1; }
    listen(ls, 4096);
    socklen_t alen = sizeof a;
    getsockname(ls, (struct sockaddr *)&a, &alen);
    printf("port %d\n", ntohs(a.sin_port));
    fflush(stdout);
    /* one chunk of 348 packets, chunked-framed */
    int payload = 348 * TS;
    int h = sprintf((char *)blast_buf, "%x\r\n", payload);
    for (int i = 0; i < payload; i++) blast_buf[h + i] = (i % TS) ? (unsigned char)i : 0x47;
    memcpy(blast_buf + h + payload, "\r\n", 2);
    blast_len = h + payload + 2;
    const char *headers = "HTTP/1.1 200 OK\r\nContent-Type: video/mp2t\r\nTransfer-Encoding: chunked\r\n\r\n";
    ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[1024];
    signal(SIGPIPE, SIG_IGN);
    for (;;) {
        int n = epoll_wait(ep, events, 1024, -1);
        for (int i = 0; i < n; i++) {
            bconn_t *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    bconn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    struct epoll_event e2 = {.events = EPOLLIN | EPOLLOUT, .data.ptr = nc};
                    epoll_ctl(ep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            if (events[i].events & EPOLLIN) {
                char tmp[4096];
                ssize_t r = recv(c->fd, tmp, sizeof tmp, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) { close(c->fd); free(c); continue; }
                if (!c->sent_headers) {
                    c->sent_headers = 1;
                    if (write(c->fd, headers, strlen(headers)) < 0) { close(c->fd); free(c); continue; }
                }
            }
            if ((events[i].events & EPOLLOUT) && c->sent_headers) {
                for (;;) {
                    ssize_t w = send(c->fd, blast_buf + c->off, blast_len - c->off, MSG_NOSIGNAL);
                    if (w < 0) break;
                    c->off = (c->off + w) % blast_len;
                }
            }
        }
    }
}

int main(int argc, char **argv) {
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    if (argc > 1 && strcmp(argv[1], "read") == 0) return run_read(argc, argv);
    if (argc > 1 && strcmp(argv[1], "blast") == 0) return run_blast(argc, argv);
    fprintf(stderr, "usage: loadgen read|blast ...\n");
    return 2;
}
