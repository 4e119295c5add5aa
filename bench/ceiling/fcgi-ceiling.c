/* The FastCGI ceiling for bench/query.sh: the least a libfcgi responder can do per request — accept, read
 * the parameters, answer a fixed body — with the threading model knitd uses (N threads, each blocking in
 * FCGX_Accept_r on one shared unix socket). Behind the same nginx, TLS and socket kind as knitd, its req/s is
 * what the architecture allows; knitd's tag query is measured as a share of it.
 *
 * usage: fcgi-ceiling SOCKET BODY_FILE THREADS
 * Answers every request with BODY_FILE's bytes as application/json. Stops on SIGTERM (default action). */
#include <fcgiapp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

static char *response;
static size_t response_length;
static int listen_fd;

static void *serve(void *unused) {
    (void)unused;
    FCGX_Request request;
    if (FCGX_InitRequest(&request, listen_fd, 0) != 0) return NULL;
    while (FCGX_Accept_r(&request) >= 0) {
        /* Read what a real handler must look at, so the comparison includes the parameter lookups. */
        (void)FCGX_GetParam("REQUEST_URI", request.envp);
        (void)FCGX_GetParam("HTTP_AUTHORIZATION", request.envp);
        FCGX_PutStr(response, (int)response_length, request.out);
        FCGX_Finish_r(&request);
    }
    return NULL;
}

int main(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: fcgi-ceiling SOCKET BODY_FILE THREADS\n");
        return 2;
    }
    FILE *file = fopen(argv[2], "rb");
    if (!file) { perror(argv[2]); return 1; }
    static char body[1 << 20];
    size_t body_length = fread(body, 1, sizeof body, file);
    fclose(file);
    char head[256];
    int head_length = snprintf(head, sizeof head,
        "Status: 200 OK\r\nContent-Type: application/json\r\nContent-Length: %zu\r\n\r\n", body_length);
    response_length = (size_t)head_length + body_length;
    response = malloc(response_length);
    memcpy(response, head, (size_t)head_length);
    memcpy(response + head_length, body, body_length);

    int threads = atoi(argv[3]);
    if (threads < 1) threads = 1;
    if (FCGX_Init() != 0) { fprintf(stderr, "FCGX_Init failed\n"); return 1; }
    umask(0);
    listen_fd = FCGX_OpenSocket(argv[1], 1024);
    if (listen_fd < 0) { fprintf(stderr, "cannot listen on %s\n", argv[1]); return 1; }
    pthread_t *ids = calloc((size_t)threads, sizeof *ids);
    for (int i = 0; i < threads; i++) pthread_create(&ids[i], NULL, serve, NULL);
    for (int i = 0; i < threads; i++) pthread_join(ids[i], NULL);
    return 0;
}
