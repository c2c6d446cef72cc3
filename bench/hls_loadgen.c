/* hls_loadgen: epoll HLS players for the live fan-out benchmark.
 *
 * Built by bench/live_fanout.py with `gcc -O2`.  Two modes:
 *
 *   hls_loadgen play HOST PORT PATH PLAYERS RAMP_PER_S WARMUP_S MEASURE_S PROBES RCVBUF POLL_SCALE
 *       PLAYERS players of the live playlist PATH, each on one keep-alive
 *       HTTP/1.1 connection, behave as players do: load the playlist, start
 *       three segments before its end, fetch every new segment in order, and
 *       reload the playlist a target duration (times POLL_SCALE; 0 = at once)
 *       after the previous load began.  Every segment body is checked: it
 *       starts on a TS sync byte and every 188th byte is 0x47.
 *       After WARMUP_S seconds it measures for MEASURE_S seconds, then keeps
 *       running two target durations more so that what was announced in the
 *       window can complete.  For each player it prints the media seconds of
 *       the segments announced (first seen in one of its playlists) during
 *       the window, of those it completed, how many it missed (gone, 404, or
 *       skipped between two playlists), its bytes and alignment errors.  Each
 *       playlist load begun in the window prints its time (request written to
 *       last body byte).  During the window PROBES new players join, one at a
 *       time: each times, from its connect(), its first segment's first body
 *       byte (playlist, then the segment three before the end).  The
 *       summary's bytes are the segment bytes all players read in the window.
 *
 *   hls_loadgen serve PORT SEGMENT_BYTES
 *       A C HLS server as fast as the players read: every playlist load of a
 *       connection announces one new segment of SEGMENT_BYTES.  Players with
 *       POLL_SCALE 0 against it measure the load generator's own ceiling.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
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
#define QMAX 64
#define PATHMAX 512

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

typedef struct {
    long long seq;
    double dur;
    int counted; /* announced during the window */
    char path[PATHMAX];
} seg_t;

enum { H_CONNECTING, H_IDLE, H_HEAD, H_BODY, H_DONE };

typedef struct {
    int fd, kind; /* 0 player, 2 probe */
    int state;
    int want_segment; /* the request in flight is a segment (else the playlist) */
    char hdr[4096];
    int hdr_len;
    int status;
    long long clen, got;
    char *pl;
    int pl_len, pl_cap;
    double t_start, t_req, t_load, next_load, t_first;
    double target;
    seg_t q[QMAX];
    int qhead, qlen;
    long long last_seq;
    int started;
    int in_window_load; /* the playlist load in flight began in the window */
    /* the segment in flight */
    seg_t cur;
    long phase;
    int first_checked;
    /* accounting */
    double announced, completed;
    int missed, align_errors, closed, reconnects;
    long long bytes, bytes_at_start, bytes_at_end;
} hconn_t;

static int ep, pep;
static struct sockaddr_in addr;
static char host_hdr[128];
static const char *pl_path;
static unsigned char rbuf[BUF];
static int rcvbuf;
static double poll_scale;
static double win_start = -1, win_end = -1;
static double *loads;
static int nloads, cap_loads;

static int in_window(double t) { return win_start > 0 && t >= win_start && t < win_end; }

static void record_load(double ms) {
    if (nloads == cap_loads) {
        cap_loads = cap_loads ? cap_loads * 2 : 4096;
        loads = realloc(loads, cap_loads * sizeof *loads);
    }
    loads[nloads++] = ms;
}

static int connect_fd(int kind) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { perror("socket"); exit(1); }
    if (rcvbuf > 0) setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    int r = connect(fd, (struct sockaddr *)&addr, sizeof addr);
    if (r < 0 && errno != EINPROGRESS) { perror("connect"); exit(1); }
    (void)kind;
    return fd;
}

static void watch(hconn_t *c, uint32_t events, int op) {
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(c->kind == 2 ? pep : ep, op, c->fd, &ev);
}

static void open_conn(hconn_t *c) {
    c->fd = connect_fd(c->kind);
    c->state = H_CONNECTING;
    watch(c, EPOLLOUT, EPOLL_CTL_ADD);
}

static void drop_conn(hconn_t *c, int reconnect);

static void send_get(hconn_t *c, const char *path, int segment) {
    char req[1024];
    int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: hls_loadgen\r\n\r\n",
                     path, host_hdr);
    c->want_segment = segment;
    c->t_req = now();
    c->hdr_len = 0;
    c->got = 0;
    c->clen = -1;
    c->state = H_HEAD;
    if (!segment) {
        c->pl_len = 0;
        c->t_load = c->t_req;
        c->in_window_load = in_window(c->t_req);
    }
    watch(c, EPOLLIN, EPOLL_CTL_MOD);
    if (write(c->fd, req, n) != n) drop_conn(c, 1);
}

static void drop_conn(hconn_t *c, int reconnect) {
    epoll_ctl(c->kind == 2 ? pep : ep, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = H_DONE;
    if (reconnect && c->kind == 0) {
        c->closed++;
        c->reconnects++;
        open_conn(c);
    }
}

static const char *path_of(const char *uri) {
    if (strncmp(uri, "http://", 7) == 0 || strncmp(uri, "https://", 8) == 0) {
        const char *p = strchr(uri + 8, '/');
        return p ? p : "/";
    }
    return uri;
}

/* A playlist arrived: queue what is new. */
static void take_playlist(hconn_t *c) {
    c->pl[c->pl_len] = 0;
    long long seq = 0;
    double dur = 0;
    seg_t fresh[QMAX * 2];
    int n = 0;
    char *save = NULL;
    for (char *line = strtok_r(c->pl, "\r\n", &save); line; line = strtok_r(NULL, "\r\n", &save)) {
        if (strncmp(line, "#EXT-X-TARGETDURATION:", 22) == 0) c->target = atof(line + 22);
        else if (strncmp(line, "#EXT-X-MEDIA-SEQUENCE:", 22) == 0) seq = atoll(line + 22);
        else if (strncmp(line, "#EXTINF:", 8) == 0) dur = atof(line + 8);
        else if (line[0] && line[0] != '#') {
            if (n < QMAX * 2) {
                fresh[n].seq = seq;
                fresh[n].dur = dur;
                snprintf(fresh[n].path, PATHMAX, "%s", path_of(line));
                n++;
            }
            seq++;
        }
    }
    if (c->target <= 0) c->target = 1;
    if (n == 0) return;
    int from = 0;
    int window = c->in_window_load;
    if (!c->started) {
        c->started = 1;
        from = n > 3 ? n - 3 : 0;
        c->last_seq = fresh[from].seq - 1;
    } else if (fresh[n - 1].seq < c->last_seq) {
        c->last_seq = fresh[0].seq - 1; /* the numbering went back */
    } else if (fresh[0].seq > c->last_seq + 1) {
        int gap = (int)(fresh[0].seq - c->last_seq - 1);
        c->missed += gap;
        if (window) c->announced += gap * fresh[0].dur;
    }
    for (int i = from; i < n; i++) {
        if (fresh[i].seq <= c->last_seq) continue;
        fresh[i].counted = window;
        if (window) c->announced += fresh[i].dur;
        c->last_seq = fresh[i].seq;
        if (c->qlen < QMAX) {
            c->q[(c->qhead + c->qlen) % QMAX] = fresh[i];
            c->qlen++;
        } else {
            c->missed++;
        }
    }
}

static void next_request(hconn_t *c) {
    if (c->qlen > 0) {
        c->cur = c->q[c->qhead];
        c->qhead = (c->qhead + 1) % QMAX;
        c->qlen--;
        c->phase = 0;
        c->first_checked = 0;
        send_get(c, c->cur.path, 1);
        return;
    }
    if (c->kind == 2) { drop_conn(c, 0); return; } /* a probe with nothing to fetch: failed */
    c->state = H_IDLE;
    c->next_load = c->t_load + c->target * poll_scale;
    watch(c, 0, EPOLL_CTL_MOD);
}

static void segment_bytes(hconn_t *c, const unsigned char *p, long n) {
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
    c->bytes += n;
}

static void body_done(hconn_t *c) {
    double t = now();
    if (!c->want_segment) {
        if (c->in_window_load && c->kind == 0) record_load((t - c->t_req) * 1000);
        if (c->status == 200) take_playlist(c);
    } else if (c->status == 200) {
        if (c->cur.counted) c->completed += c->cur.dur;
    } else {
        c->missed++;
    }
    if (c->kind == 2 && c->want_segment) { drop_conn(c, 0); return; }
    next_request(c);
}

static void on_data(hconn_t *c, unsigned char *p, long n) {
    while (n > 0 && c->state != H_DONE) {
        if (c->state == H_HEAD) {
            long room = (long)sizeof c->hdr - 1 - c->hdr_len;
            long take = n < room ? n : room;
            memcpy(c->hdr + c->hdr_len, p, take);
            c->hdr_len += take;
            c->hdr[c->hdr_len] = 0;
            char *end = strstr(c->hdr, "\r\n\r\n");
            if (!end) {
                if (take == room) { drop_conn(c, 1); return; }
                return;
            }
            long hlen = end + 4 - c->hdr;
            long used = hlen - (c->hdr_len - take);
            p += used;
            n -= used;
            c->status = atoi(c->hdr + 9);
            char *cl = strcasestr(c->hdr, "\r\ncontent-length:");
            c->clen = cl ? atoll(cl + 17) : -1;
            if (c->clen < 0) { drop_conn(c, 1); return; } /* players here need a length */
            c->state = H_BODY;
            c->got = 0;
            if (c->clen == 0) { body_done(c); continue; }
        }
        if (c->state == H_BODY) {
            long take = n < c->clen - c->got ? n : (long)(c->clen - c->got);
            if (c->want_segment && c->status == 200) {
                segment_bytes(c, p, take);
            } else if (!c->want_segment) {
                if (c->pl_len + take + 1 > c->pl_cap) {
                    c->pl_cap = (c->pl_len + take + 1) * 2;
                    c->pl = realloc(c->pl, c->pl_cap);
                }
                memcpy(c->pl + c->pl_len, p, take);
                c->pl_len += take;
            }
            c->got += take;
            p += take;
            n -= take;
            if (c->got == c->clen) body_done(c);
        } else {
            return; /* idle: unexpected bytes are ignored */
        }
    }
}

static void on_event(hconn_t *c) {
    if (c->state == H_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { drop_conn(c, c->kind == 0); return; }
        send_get(c, pl_path, 0);
        return;
    }
    /* One read per event: level-triggered epoll reports the rest, and one
     * fast connection never holds up the others' answers. */
    for (int reads = 0; reads < 1; reads++) {
        ssize_t n = recv(c->fd, rbuf, BUF, 0);
        if (n == 0) { drop_conn(c, 1); return; }
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            drop_conn(c, 1);
            return;
        }
        on_data(c, rbuf, n);
        /* a probe is timed to its segment's first byte: it leaves then */
        if (c->kind == 2 && c->want_segment && c->t_first && c->state != H_DONE) { drop_conn(c, 0); return; }
        if (c->state == H_DONE || c->state == H_IDLE) return;
    }
}

static double percentile(double *v, int n, double pct) {
    if (n == 0) return -1;
    int k = (int)(pct / 100 * (n - 1) + 0.5);
    return v[k];
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int run_play(int argc, char **argv) {
    if (argc < 12) {
        fprintf(stderr, "usage: hls_loadgen play HOST PORT PATH PLAYERS RAMP WARMUP MEASURE PROBES RCVBUF POLL_SCALE\n");
        return 2;
    }
    const char *host = argv[2];
    int port = atoi(argv[3]);
    pl_path = argv[4];
    int players = atoi(argv[5]);
    double ramp = atof(argv[6]);
    double warmup = atof(argv[7]);
    double measure = atof(argv[8]);
    int probes = atoi(argv[9]);
    rcvbuf = atoi(argv[10]);
    poll_scale = atof(argv[11]);
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    inet_pton(AF_INET, host, &addr.sin_addr);
    snprintf(host_hdr, sizeof host_hdr, "%s:%d", host, port);
    ep = epoll_create1(0);
    pep = epoll_create1(0);
    hconn_t *all = calloc(players + probes, sizeof(hconn_t));
    int opened = 0, nprobes = 0;
    hconn_t *probe = NULL;
    double t0 = now(), next_probe = 0, tail = 0;
    double probe_gap = probes ? measure / (probes + 1) : 0;
    struct epoll_event events[64];
    struct rusage ru0, ru1;
    int measuring = 0;
    for (;;) {
        double t = now();
        int want = ramp > 0 ? (int)((t - t0) * ramp) + 1 : players;
        while (opened < players && opened < want) {
            all[opened].kind = 0;
            open_conn(&all[opened++]);
        }
        if (!measuring && t - t0 >= warmup) {
            measuring = 1;
            win_start = t;
            win_end = t + measure;
            for (int i = 0; i < opened; i++) all[i].bytes_at_start = all[i].bytes;
            getrusage(RUSAGE_SELF, &ru0);
            next_probe = t + probe_gap;
        }
        if (measuring) {
            if (t >= win_end) {
                if (tail == 0) {
                    for (int i = 0; i < opened; i++) all[i].bytes_at_end = all[i].bytes;
                    double longest = 1;
                    for (int i = 0; i < opened; i++) if (all[i].target > longest) longest = all[i].target;
                    tail = win_end + 2 * longest * (poll_scale > 0 ? 1 : 0.25);
                    getrusage(RUSAGE_SELF, &ru1);
                }
                if (t >= tail) break;
            }
            if ((probe == NULL || probe->state == H_DONE) && nprobes < probes && t >= next_probe && t < win_end) {
                probe = &all[players + nprobes++];
                probe->kind = 2;
                probe->t_start = t;
                open_conn(probe);
                next_probe = t + probe_gap;
            }
        }
        /* players whose next playlist load is due */
        for (int i = 0; i < opened; i++) {
            hconn_t *c = &all[i];
            if (c->state == H_IDLE && t >= c->next_load) send_get(c, pl_path, 0);
        }
        if (probe != NULL && probe->state != H_DONE) {
            int pn = epoll_wait(pep, events, 1, 0);
            if (pn > 0) on_event(probe);
        }
        int n = epoll_wait(ep, events, 64, 1);
        for (int i = 0; i < n; i++) on_event(events[i].data.ptr);
    }
    double cpu = (ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec) + (ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec) / 1e6 +
                 (ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) + (ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
    long long total = 0;
    for (int i = 0; i < players; i++) {
        hconn_t *c = &all[i];
        total += c->bytes_at_end - c->bytes_at_start;
        printf("player %d %.3f %.3f %d %lld %d %d %.1f\n", i, c->announced, c->completed, c->missed,
               c->bytes, c->align_errors, c->closed, c->target);
    }
    for (int i = 0; i < nprobes; i++) {
        hconn_t *c = &all[players + i];
        printf("probe %d %.3f %d\n", i, c->t_first ? (c->t_first - c->t_start) * 1000 : -1.0, c->align_errors);
    }
    qsort(loads, nloads, sizeof *loads, cmp_double);
    for (int i = 0; i < nloads; i++) printf("load %.3f\n", loads[i]);
    printf("summary seconds %.3f bytes %lld cpu %.3f loads %d load_p50 %.3f load_p99 %.3f load_max %.3f\n",
           measure, total, cpu, nloads, percentile(loads, nloads, 50), percentile(loads, nloads, 99),
           nloads ? loads[nloads - 1] : -1.0);
    return 0;
}

/* --- serve: the players' ceiling --------------------------------------------- */

typedef struct {
    int fd;
    char in[4096];
    int in_len;
    char head[1024];
    int head_len, head_off;
    long body_len, body_off;
    const unsigned char *body;
    long long next; /* next segment number this connection announces */
    char pl[1024];
} sconn_t;

static unsigned char *seg_body;

static int serve_write(sconn_t *c) {
    while (c->head_off < c->head_len) {
        ssize_t w = send(c->fd, c->head + c->head_off, c->head_len - c->head_off, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        c->head_off += w;
    }
    /* At most 256 KiB per turn of a connection, so that every other
     * connection's request is answered soon (a player's times are ours). */
    long budget = 256 * 1024;
    while (c->body_off < c->body_len && budget > 0) {
        long len = c->body_len - c->body_off < budget ? c->body_len - c->body_off : budget;
        ssize_t w = send(c->fd, c->body + c->body_off, len, MSG_NOSIGNAL);
        if (w < 0) return errno == EAGAIN ? 0 : -1;
        c->body_off += w;
        budget -= w;
    }
    return c->body_off >= c->body_len ? 1 : 0;
}

static void serve_request(sconn_t *c, long seg_len) {
    char *end = strstr(c->in, "\r\n\r\n");
    int playlist = strstr(c->in, ".m3u8") != NULL && (strstr(c->in, ".m3u8") < end);
    if (playlist) {
        long long first = c->next > 2 ? c->next - 2 : 0;
        int n = snprintf(c->pl, sizeof c->pl, "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:1\n"
                         "#EXT-X-MEDIA-SEQUENCE:%lld\n", first);
        for (long long s = first; s <= c->next; s++)
            n += snprintf(c->pl + n, sizeof c->pl - n, "#EXTINF:1.000,\n/s/%lld.ts\n", s);
        c->next++;
        c->body = (unsigned char *)c->pl;
        c->body_len = n;
    } else {
        c->body = seg_body;
        c->body_len = seg_len;
    }
    c->head_len = snprintf(c->head, sizeof c->head, "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nContent-Length: %ld\r\n\r\n",
                           playlist ? "application/vnd.apple.mpegurl" : "video/mp2t", c->body_len);
    c->head_off = 0;
    c->body_off = 0;
    int used = end + 4 - c->in;
    memmove(c->in, c->in + used, c->in_len - used);
    c->in_len -= used;
    c->in[c->in_len] = 0;
}

static int run_serve(int argc, char **argv) {
    int port = argc > 2 ? atoi(argv[2]) : 0;
    long seg_len = argc > 3 ? atol(argv[3]) : 1 << 20;
    seg_len = seg_len / TS * TS;
    seg_body = malloc(seg_len);
    for (long i = 0; i < seg_len; i++) seg_body[i] = (i % TS) ? (unsigned char)i : 0x47;
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
    signal(SIGPIPE, SIG_IGN);
    int sep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = NULL};
    epoll_ctl(sep, EPOLL_CTL_ADD, ls, &ev);
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(sep, events, 64, -1);
        for (int i = 0; i < n; i++) {
            sconn_t *c = events[i].data.ptr;
            if (c == NULL) {
                for (;;) {
                    int fd = accept4(ls, NULL, NULL, SOCK_NONBLOCK);
                    if (fd < 0) break;
                    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    sconn_t *nc = calloc(1, sizeof *nc);
                    nc->fd = fd;
                    nc->next = 3;
                    struct epoll_event e2 = {.events = EPOLLIN, .data.ptr = nc};
                    epoll_ctl(sep, EPOLL_CTL_ADD, fd, &e2);
                }
                continue;
            }
            if (events[i].events & EPOLLIN) {
                ssize_t r = recv(c->fd, c->in + c->in_len, sizeof c->in - 1 - c->in_len, 0);
                if (r == 0 || (r < 0 && errno != EAGAIN)) { close(c->fd); free(c); continue; }
                if (r > 0) { c->in_len += r; c->in[c->in_len] = 0; }
            }
            int state = 1;
            for (;;) {
                if (c->body_off >= c->body_len && c->head_off >= c->head_len) {
                    if (!strstr(c->in, "\r\n\r\n")) break;
                    serve_request(c, seg_len);
                }
                state = serve_write(c);
                if (state <= 0) break;
            }
            if (state < 0) { close(c->fd); free(c); continue; }
            /* watch writability only while an answer is unsent */
            struct epoll_event e3 = {.events = EPOLLIN | (state == 0 ? EPOLLOUT : 0), .data.ptr = c};
            epoll_ctl(sep, EPOLL_CTL_MOD, c->fd, &e3);
        }
    }
}

int main(int argc, char **argv) {
    struct rlimit rl = {65536, 65536};
    setrlimit(RLIMIT_NOFILE, &rl);
    if (argc > 1 && strcmp(argv[1], "play") == 0) return run_play(argc, argv);
    if (argc > 1 && strcmp(argv[1], "serve") == 0) return run_serve(argc, argv);
    fprintf(stderr, "usage: hls_loadgen play|serve ...\n");
    return 2;
}
