/* api_loadgen: request/response latency under N concurrent keep-alive clients.
 *
 * Built by bench/api_load.py with `gcc -O2 -pthread`.
 *
 *   api_loadgen HOST PORT CLIENTS SECONDS ACCEPT_GZIP PATH [PATH...]
 *
 * Each client (one thread, one keep-alive connection) sends GET requests in a
 * loop, cycling through the PATHs, reads the headers and exactly
 * Content-Length bytes of body (or a chunked body), and records the time from
 * sending the request to the last body byte.  ACCEPT_GZIP 1 adds
 * "Accept-Encoding: gzip" (bodies are not decompressed).  After SECONDS it
 * prints one summary line:
 *   requests N errors E bytes B rps R p50_ms P p90_ms P p99_ms P max_ms M
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BUF (1 << 20)
#define MAXLAT 4000000

static const char *host;
static int port, nclients, gz, npaths;
static char **paths;
static double deadline;
static double *lat;
static long nlat;
static long errors;
static long long total_bytes;
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int dial(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    inet_pton(AF_INET, host, &a.sin_addr);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) { close(fd); return -1; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

/* A buffered reader over one connection. */
typedef struct { int fd; char *buf; long start, end; } reader;

static int fill(reader *r) {
    if (r->start > 0) {
        memmove(r->buf, r->buf + r->start, r->end - r->start);
        r->end -= r->start;
        r->start = 0;
    }
    if (r->end >= BUF) return -1;
    long n = read(r->fd, r->buf + r->end, BUF - r->end);
    if (n <= 0) return -1;
    r->end += n;
    return 0;
}

/* Returns a pointer to a NUL-terminated line (without CRLF), or NULL. */
static char *line(reader *r) {
    for (;;) {
        r->buf[r->end] = 0;
        char *eol = strstr(r->buf + r->start, "\r\n");
        if (eol) {
            char *l = r->buf + r->start;
            *eol = 0;
            r->start = eol + 2 - r->buf;
            return l;
        }
        if (fill(r) < 0) return NULL;
    }
}

static int skip(reader *r, long long n) {
    while (n > 0) {
        long avail = r->end - r->start;
        if (avail == 0) {
            r->start = r->end = 0;
            long got = read(r->fd, r->buf, n < BUF ? n : BUF);
            if (got <= 0) return -1;
            r->end = got;
            avail = got;
        }
        long take = avail < n ? avail : n;
        r->start += take;
        n -= take;
    }
    return 0;
}

/* Reads one whole response; returns its body size, or -1. */
static long long read_response(reader *r) {
    char *status = line(r);
    if (!status || strncmp(status, "HTTP/1.1 200", 12) != 0) return -1;
    long long length = -1;
    int chunked = 0;
    for (;;) {
        char *h = line(r);
        if (!h) return -1;
        if (!*h) break;
        if (strncasecmp(h, "content-length:", 15) == 0) length = atoll(h + 15);
        if (strncasecmp(h, "transfer-encoding:", 18) == 0 && strcasestr(h, "chunked")) chunked = 1;
    }
    if (!chunked) {
        if (length < 0 || skip(r, length) < 0) return -1;
        return length;
    }
    long long body = 0;
    for (;;) {
        char *l = line(r);
        if (!l) return -1;
        long long size = strtoll(l, NULL, 16);
        if (size == 0) {
            char *end = line(r);
            return end ? body : -1;
        }
        if (skip(r, size + 2) < 0) return -1;
        body += size;
    }
}

static int cmp(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static void *client(void *arg) {
    long id = (long)arg;
    reader rd = {.fd = -1, .buf = malloc(BUF + 1), .start = 0, .end = 0};
    char req[8192];
    int fd = dial();
    long i = id;
    rd.fd = fd;
    while (now() < deadline) {
        if (fd < 0) {
            fd = dial();
            rd.fd = fd; rd.start = rd.end = 0;
            if (fd < 0) { __sync_fetch_and_add(&errors, 1); usleep(10000); continue; }
        }
        const char *path = paths[i++ % npaths];
        int len = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: api_loadgen\r\n%s\r\n",
                           path, host, port, gz ? "Accept-Encoding: gzip\r\n" : "");
        double t0 = now();
        if (write(fd, req, len) != len) { close(fd); fd = -1; __sync_fetch_and_add(&errors, 1); continue; }
        long long got = read_response(&rd);
        double t1 = now();
        if (got < 0) { close(fd); fd = -1; __sync_fetch_and_add(&errors, 1); continue; }
        pthread_mutex_lock(&mu);
        if (nlat < MAXLAT) lat[nlat++] = (t1 - t0) * 1000.0;
        total_bytes += got;
        pthread_mutex_unlock(&mu);
    }
    if (fd >= 0) close(fd);
    free(rd.buf);
    return NULL;
}

int main(int argc, char **argv) {
    if (argc < 7) {
        fprintf(stderr, "usage: api_loadgen HOST PORT CLIENTS SECONDS ACCEPT_GZIP PATH [PATH...]\n");
        return 2;
    }
    host = argv[1];
    port = atoi(argv[2]);
    nclients = atoi(argv[3]);
    double seconds = atof(argv[4]);
    gz = atoi(argv[5]);
    paths = argv + 6;
    npaths = argc - 6;
    lat = malloc(sizeof(double) * MAXLAT);
    double start = now();
    deadline = start + seconds;
    pthread_t th[1024];
    for (long c = 0; c < nclients && c < 1024; c++) pthread_create(&th[c], NULL, client, (void *)c);
    for (long c = 0; c < nclients && c < 1024; c++) pthread_join(th[c], NULL);
    double took = now() - start;
    qsort(lat, nlat, sizeof(double), cmp);
#define PCT(p) (nlat ? lat[(long)((nlat - 1) * (p))] : 0.0)
    printf("requests %ld errors %ld bytes %lld rps %.1f p50_ms %.2f p90_ms %.2f p99_ms %.2f max_ms %.2f\n",
           nlat, errors, total_bytes, nlat / took, PCT(0.5), PCT(0.9), PCT(0.99), nlat ? lat[nlat - 1] : 0.0);
    return 0;
}
