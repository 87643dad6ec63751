/*
 * cgi-bridge's fork server in C: the same protocol as fork-server.pl (read that file's header
 * for the frames and the request format), for machines with a C compiler. The Perl one writes
 * about a hundred pages of interpreter state per program, and after every fork() each of those
 * writes is a copy-on-write fault; this one starts programs with vfork(), which copies no page
 * tables and write-protects nothing, and keeps its own state in a few small tables.
 *
 * Build: cc -O2 -o fork-server fork-server.c   (scripts/build-fork-server.js does it at install)
 * Usage: fork-server SOCKET
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAX_HEADER (4u * 1024 * 1024)

/* A connection whose header is being read. */
struct conn {
  int fd;
  uint32_t len, want;
  char *buf;
};

/* A request waiting for the other half of its connections. */
struct run {
  uint32_t id;
  int out, in; /* -1: not here yet (in), or none */
  int stdin_wanted;
  char *buf;   /* the header: the strings below point into it */
  char *cwd, *file;
  char **argv, **envp;
};

/* A program that runs, or ran and still has its stderr open. */
struct kid {
  uint32_t id;
  pid_t pid; /* 0 once reaped */
  int err;   /* -1 once its stderr ended */
};

static const char *sock_path;
static char *sock_dir;
static int listener, sig_r, sig_w;

static struct conn *conns;
static size_t nconns, cap_conns;
static struct run **runs;
static size_t nruns, cap_runs;
static struct kid *kids;
static size_t nkids, cap_kids;
static pid_t *groups; /* leaders' pids of groups with processes left after the leader exited */
static size_t ngroups, cap_groups;

static const int reset_signals[] = {SIGPIPE, SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGCHLD};

#define GROW(arr, n, cap)                                                       \
  do {                                                                          \
    if ((n) == (cap)) {                                                         \
      size_t c_ = (cap) ? (cap) * 2 : 16;                                       \
      void *p_ = realloc((arr), c_ * sizeof *(arr));                            \
      if (!p_) die_errno("out of memory");                                      \
      (arr) = p_;                                                               \
      (cap) = c_;                                                               \
    }                                                                           \
  } while (0)

static void die_errno(const char *what) {
  fprintf(stderr, "fork-server: %s: %s\n", what, strerror(errno));
  exit(1);
}

/* finish: Node is gone; nobody will end these programs or read their output. */
static void finish(void) {
  for (size_t i = 0; i < nkids; i++)
    if (kids[i].pid > 0) {
      kill(-kids[i].pid, SIGKILL);
      kill(kids[i].pid, SIGKILL); /* not yet past setsid() */
    }
  for (size_t i = 0; i < ngroups; i++) kill(-groups[i], SIGKILL);
  unlink(sock_path);
  if (sock_dir) rmdir(sock_dir);
  _exit(0);
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static void write_all(const void *data, size_t n) {
  const char *p = data;
  while (n > 0) {
    ssize_t w = write(1, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      finish();
    }
    p += w;
    n -= (size_t)w;
  }
}

static void frame(char type, uint32_t id, const void *payload, size_t len) {
  unsigned char head[9];
  head[0] = (unsigned char)type;
  put_u32(head + 1, id);
  put_u32(head + 5, (uint32_t)len);
  if (len <= 4096) {
    unsigned char buf[9 + 4096];
    memcpy(buf, head, 9);
    memcpy(buf + 9, payload, len);
    write_all(buf, 9 + len);
    return;
  }
  write_all(head, 9);
  write_all(payload, len);
}

static void frame_num(char type, uint32_t id, long n) {
  char s[32];
  int len = snprintf(s, sizeof s, "%ld", n);
  frame(type, id, s, (size_t)len);
}

/* cloexec marks an fd close-on-exec (portable: no pipe2, accept4 or SOCK_CLOEXEC on macOS). */
static int cloexec(int fd) {
  if (fd >= 0) fcntl(fd, F_SETFD, FD_CLOEXEC);
  return fd;
}

static int pipe_cloexec(int p[2]) {
  if (pipe(p) != 0) return -1;
  cloexec(p[0]);
  cloexec(p[1]);
  return 0;
}

static void on_chld(int sig) {
  (void)sig;
  int saved = errno;
  if (write(sig_w, "x", 1) < 0) { /* the pipe is full: a wake-up is pending anyway */
  }
  errno = saved;
}

/* take_run takes the waiting run request `id` (half: its early stdin connection instead). */
static struct run *take_run(uint32_t id, int half) {
  for (size_t i = 0; i < nruns; i++)
    if (runs[i]->id == id && (runs[i]->out < 0) == half) {
      struct run *r = runs[i];
      runs[i] = runs[--nruns];
      return r;
    }
  return NULL;
}

static void free_run(struct run *r) {
  if (r->out >= 0) close(r->out);
  if (r->in >= 0) close(r->in);
  free(r->buf);
  free(r->argv);
  free(r);
}

/* The vfork() child writes its errno here: it shares our memory until it execs or exits. */
static volatile int child_errno;

static void child(struct run *r, int err_w) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof reset_signals / sizeof *reset_signals; i++)
    sigaction(reset_signals[i], &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  int in = r->in;
  if (chdir(r->cwd) != 0) goto fail;
  if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) goto fail;
  /* Every fd of ours is close-on-exec; dup2 clears that flag on 0, 1 and 2 only. */
  if (dup2(in, 0) < 0 || dup2(r->out, 1) < 0 || dup2(err_w, 2) < 0) goto fail;
  execve(r->file, r->argv, r->envp);
  if (errno == ENOEXEC) {
    /* As execvp and node's spawn: an executable without #! runs under /bin/sh. */
    size_t n = 0;
    while (r->argv[n]) n++;
    char *sh_argv[n + 2];
    sh_argv[0] = "/bin/sh";
    sh_argv[1] = r->file;
    for (size_t i = 1; i <= n; i++) sh_argv[i + 1] = r->argv[i];
    execve("/bin/sh", sh_argv, r->envp);
  }
fail:
  child_errno = errno ? errno : EINVAL;
  _exit(127);
}

static void start(struct run *r) {
  int err[2];
  pid_t pid = -1;
  int e = 0;
  if (pipe_cloexec(err) != 0) {
    e = errno;
  } else {
    sigset_t all, old;
    sigfillset(&all);
    /* No handler of ours may run in the child while it shares our memory. */
    sigprocmask(SIG_SETMASK, &all, &old);
    child_errno = 0;
    pid = vfork();
    if (pid == 0) child(r, err[1]);
    e = pid < 0 ? errno : child_errno;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(err[1]);
    if (e != 0) {
      close(err[0]);
      if (pid > 0) waitpid(pid, NULL, 0);
    }
  }
  if (e != 0) {
    frame_num('F', r->id, e);
    free_run(r);
    return;
  }
  fcntl(err[0], F_SETFL, O_NONBLOCK);
  GROW(kids, nkids, cap_kids);
  kids[nkids++] = (struct kid){r->id, pid, err[0]};
  frame_num('S', r->id, pid);
  free_run(r);
}

static void drop_conn(size_t i) {
  close(conns[i].fd);
  free(conns[i].buf);
  conns[i] = conns[--nconns];
}

/* parse turns a whole header into a run; NULL when it is malformed. */
static int parse_id(const char *s, uint32_t *id) {
  size_t n = strlen(s);
  if (n < 1 || n > 10) return 0;
  unsigned long long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  *id = (uint32_t)v;
  return 1;
}

/* on_header handles a connection whose header is complete; the connection leaves `conns`. */
static void on_header(int fd, char *buf, uint32_t len) {
  /* The payload's fields are NUL-separated: make it one C string per field. */
  char *payload = buf + 4;
  size_t nfields = 1;
  for (uint32_t i = 0; i < len; i++)
    if (payload[i] == '\0') nfields++;
  char **f = malloc((nfields + 1) * sizeof *f);
  if (!f) die_errno("out of memory");
  payload[len] = '\0';
  f[0] = payload;
  for (uint32_t i = 0, k = 1; i < len; i++)
    if (payload[i] == '\0') f[k++] = payload + i + 1;
  f[nfields] = NULL;
  uint32_t id;
  if (nfields < 2 || !parse_id(f[1], &id)) goto bad;
  if (strcmp(f[0], "I") == 0) {
    free(f);
    free(buf);
    struct run *r = take_run(id, 0);
    if (r) {
      r->in = fd;
      start(r);
      return;
    }
    /* The run request comes later: keep this as a half with no header. */
    struct run *half = calloc(1, sizeof *half);
    if (!half) die_errno("out of memory");
    *half = (struct run){.id = id, .out = -1, .in = fd};
    GROW(runs, nruns, cap_runs);
    runs[nruns++] = half;
    return;
  }
  if (strcmp(f[0], "R") != 0 || nfields < 7) goto invalid;
  char *end;
  unsigned long argc = strtoul(f[5], &end, 10);
  if (f[5][0] < '0' || f[5][0] > '9' || *end != '\0' || argc < 1 || argc > nfields - 6)
    goto invalid;
  /* argv and envp share the field array, each ended by a NULL: argv[argc] becomes one. */
  char **argv = malloc((nfields + 2) * sizeof *argv);
  if (!argv) die_errno("out of memory");
  memcpy(argv, f + 6, argc * sizeof *argv);
  argv[argc] = NULL;
  char **envp = argv + argc + 1;
  memcpy(envp, f + 6 + argc, (nfields - 6 - argc) * sizeof *envp);
  envp[nfields - 6 - argc] = NULL;
  struct run *r = calloc(1, sizeof *r);
  if (!r) die_errno("out of memory");
  *r = (struct run){.id = id, .out = fd, .in = -1, .stdin_wanted = strcmp(f[2], "1") == 0,
                    .buf = buf, .cwd = f[3], .file = f[4], .argv = argv, .envp = envp};
  free(f);
  if (!r->stdin_wanted) {
    start(r);
    return;
  }
  struct run *half = take_run(id, 1);
  if (half) {
    r->in = half->in;
    half->in = -1;
    free_run(half);
    start(r);
    return;
  }
  GROW(runs, nruns, cap_runs);
  runs[nruns++] = r;
  return;
invalid:
  frame_num('F', id, EINVAL);
bad:
  free(f);
  free(buf);
  close(fd);
}

/* read_header reads the u32 length, then exactly that many bytes: never into the body. */
static void read_header(size_t i) {
  struct conn *c = &conns[i];
  for (;;) {
    uint32_t want = c->len < 4 ? 4 : c->want;
    if (c->len == want) break;
    ssize_t n = recv(c->fd, c->buf + c->len, want - c->len, MSG_DONTWAIT);
    if (n < 0) {
      if (errno != EINTR && errno != EAGAIN) drop_conn(i);
      return;
    }
    if (n == 0) { /* Node gave up */
      drop_conn(i);
      return;
    }
    c->len += (uint32_t)n;
    if (c->len == 4) {
      unsigned char *p = (unsigned char *)c->buf;
      uint32_t len = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
      if (len < 2 || len > MAX_HEADER) {
        drop_conn(i);
        return;
      }
      char *b = realloc(c->buf, 4 + (size_t)len + 1);
      if (!b) die_errno("out of memory");
      c->buf = b;
      c->want = 4 + len;
    }
  }
  int fd = c->fd;
  char *buf = c->buf;
  uint32_t len = c->want - 4;
  conns[i] = conns[--nconns];
  on_header(fd, buf, len);
}

static void accept_one(void) {
  int fd = cloexec(accept(listener, NULL, NULL));
  if (fd < 0) return;
  GROW(conns, nconns, cap_conns);
  char *buf = malloc(5);
  if (!buf) die_errno("out of memory");
  conns[nconns] = (struct conn){fd, 0, 4, buf};
  /* Node sends the header right after connecting: it is usually here already. */
  read_header(nconns++);
}

/* read_stderr relays what a program wrote to stderr: one read, or with drain all there is. */
static void read_stderr(struct kid *k, int drain) {
  static char buf[65536];
  while (k->err >= 0) {
    ssize_t n = read(k->err, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n > 0) {
      frame('O', k->id, buf, (size_t)n);
      if (drain) continue;
      return;
    }
    close(k->err);
    k->err = -1;
    frame('C', k->id, "", 0);
  }
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (size_t i = 0; i < nkids; i++) {
      if (kids[i].pid != pid) continue;
      read_stderr(&kids[i], 1);
      char how[32];
      int len = WIFSIGNALED(status) ? snprintf(how, sizeof how, "-1 %d", WTERMSIG(status))
                                    : snprintf(how, sizeof how, "%d 0", WEXITSTATUS(status));
      frame('X', kids[i].id, how, (size_t)len);
      /* Processes it left in its group: Node ends them, unless Node dies first (finish). */
      if (kill(-pid, 0) == 0) {
        GROW(groups, ngroups, cap_groups);
        groups[ngroups++] = pid;
      }
      kids[i].pid = 0;
      break;
    }
  }
  for (size_t i = 0; i < ngroups;)
    if (kill(-groups[i], 0) != 0) groups[i] = groups[--ngroups];
    else i++;
  for (size_t i = 0; i < nkids;)
    if (kids[i].pid == 0 && kids[i].err < 0) kids[i] = kids[--nkids];
    else i++;
}

int main(int argc, char **argv) {
  if (argc != 2 || argv[1][0] == '\0') {
    fprintf(stderr, "usage: fork-server SOCKET\n");
    return 2;
  }
  sock_path = argv[1];
  char *slash = strrchr(sock_path, '/');
  if (slash && slash != sock_path) sock_dir = strndup(sock_path, (size_t)(slash - sock_path));

  /* Node decides when this process ends (EOF on fd 0); a write to a gone Node fails (EPIPE). */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  for (size_t i = 0; i < 5; i++) sigaction(reset_signals[i], &sa, NULL);
  int sp[2];
  if (pipe_cloexec(sp) != 0) die_errno("pipe");
  fcntl(sp[0], F_SETFL, O_NONBLOCK);
  fcntl(sp[1], F_SETFL, O_NONBLOCK);
  sig_r = sp[0];
  sig_w = sp[1];
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);

  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  if (strlen(sock_path) >= sizeof addr.sun_path) {
    fprintf(stderr, "fork-server: socket path too long: %s\n", sock_path);
    return 1;
  }
  strcpy(addr.sun_path, sock_path);
  listener = cloexec(socket(AF_UNIX, SOCK_STREAM, 0));
  if (listener < 0) die_errno("socket");
  if (bind(listener, (struct sockaddr *)&addr, sizeof addr) != 0) die_errno("bind");
  if (listen(listener, SOMAXCONN) != 0) die_errno("listen");
  /* fd 0 and 1 are Node's pipes: not inherited by programs (they get their own 0, 1, 2). */
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  frame_num('R', 0, getpid());

  struct pollfd *pfd = NULL;
  size_t cap_pfd = 0;
  for (;;) {
    size_t n = 3 + nconns + nruns + nkids;
    if (n > cap_pfd) {
      cap_pfd = n * 2;
      pfd = realloc(pfd, cap_pfd * sizeof *pfd);
      if (!pfd) die_errno("out of memory");
    }
    size_t k = 0;
    pfd[k++] = (struct pollfd){0, POLLIN, 0};
    pfd[k++] = (struct pollfd){listener, POLLIN, 0};
    pfd[k++] = (struct pollfd){sig_r, POLLIN, 0};
    for (size_t i = 0; i < nconns; i++) pfd[k++] = (struct pollfd){conns[i].fd, POLLIN, 0};
    /* Anything readable on a waiting run's output connection is its end: Node gave up. (An
     * early stdin connection is not watched: its body follows the header.) */
    for (size_t i = 0; i < nruns; i++)
      if (runs[i]->out >= 0) pfd[k++] = (struct pollfd){runs[i]->out, POLLIN, 0};
    for (size_t i = 0; i < nkids; i++) pfd[k++] = (struct pollfd){kids[i].err, POLLIN, 0};
    int timeout = ngroups ? 500 : -1;
    int ready = poll(pfd, k, timeout);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die_errno("poll");
    }
    if (pfd[0].revents) {
      char x[4096];
      ssize_t r = read(0, x, sizeof x);
      if (r == 0 || (r < 0 && errno != EINTR && errno != EAGAIN)) finish();
    }
    if (pfd[2].revents) {
      char x[512];
      while (read(sig_r, x, sizeof x) > 0) {
      }
    }
    /* Handlers change the tables: act on a snapshot of the fds that were ready. */
    size_t nready = 0;
    int *fds = malloc((k + 1) * sizeof *fds);
    if (!fds) die_errno("out of memory");
    for (size_t i = 3; i < k; i++)
      if (pfd[i].revents) fds[nready++] = pfd[i].fd;
    for (size_t j = 0; j < nready; j++) {
      int fd = fds[j];
      size_t i;
      for (i = 0; i < nconns && conns[i].fd != fd; i++) {
      }
      if (i < nconns) {
        read_header(i);
        continue;
      }
      for (i = 0; i < nruns && runs[i]->out != fd; i++) {
      }
      /* A handler before may have closed the fd that was ready and reused its number. */
      if (i < nruns && poll(&(struct pollfd){fd, POLLIN, 0}, 1, 0) == 1) {
        struct run *r = runs[i];
        runs[i] = runs[--nruns];
        free_run(r);
        continue;
      }
      for (i = 0; i < nkids && kids[i].err != fd; i++) {
      }
      if (i < nkids) read_stderr(&kids[i], 0);
    }
    free(fds);
    if (pfd[1].revents) accept_one();
    reap();
  }
}
