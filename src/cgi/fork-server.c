/*
 * cgi-bridge's fork server in C: the same protocol as fork-server.pl (read that file's header
 * for the frames), for machines with a C compiler. The Perl one writes about a hundred pages of
 * interpreter state per program, and after every fork() each of those writes is a copy-on-write
 * fault; this one starts programs with vfork(), which copies no page tables and write-protects
 * nothing, and keeps its own state in a few small tables. A program's stdin, stdout and stderr
 * are pipes to this process, relayed as frames on its own stdin and stdout: Node opens no file
 * descriptor per request.
 *
 * Build: cc -O2 -o fork-server fork-server.c   (scripts/build-fork-server.js does it at install)
 * Usage: fork-server
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
#include <sys/wait.h>
#include <unistd.h>

#define MAX_FRAME (4u * 1024 * 1024)
#define READ_CHUNK 65536

/* A program: it runs, or ran and has a pipe still open. Closed pipes are -1. */
struct kid {
  uint32_t id;
  pid_t pid; /* 0 once reaped */
  int in, out, err;
  int paused;     /* Node asked to stop reading its stdout (P) */
  int in_end;     /* Node ended its stdin (E): close it once the queue is written */
  int in_failed;  /* its stdin is gone; Node was told (Q) */
  char *queue;    /* stdin bytes not yet written: queue[qoff, qlen) */
  size_t qoff, qlen, qcap;
};

static int sig_r, sig_w;
static struct kid *kids;
static size_t nkids, cap_kids;
static pid_t *groups; /* leaders' pids of groups with processes left after the leader exited */
static size_t ngroups, cap_groups;
static unsigned char *ibuf; /* frames from Node not yet handled: ibuf[0, ilen) */
static size_t ilen, icap;

static const int reset_signals[] = {SIGPIPE, SIGINT, SIGQUIT, SIGHUP, SIGTERM, SIGCHLD};

static void die_errno(const char *what) {
  fprintf(stderr, "fork-server: %s: %s\n", what, strerror(errno));
  exit(1);
}

static void *grow(void *p, size_t *cap, size_t need, size_t size) {
  if (need <= *cap) return p;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *q = realloc(p, c * size);
  if (!q) die_errno("out of memory");
  *cap = c;
  return q;
}

/* finish: Node is gone; nobody will end these programs or read their output. */
static void finish(void) {
  for (size_t i = 0; i < nkids; i++)
    if (kids[i].pid > 0) {
      kill(-kids[i].pid, SIGKILL);
      kill(kids[i].pid, SIGKILL); /* not yet past setsid() */
    }
  for (size_t i = 0; i < ngroups; i++) kill(-groups[i], SIGKILL);
  _exit(0);
}

static void put_u32(unsigned char *p, uint32_t v) {
  p[0] = v >> 24;
  p[1] = v >> 16;
  p[2] = v >> 8;
  p[3] = v;
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
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

/* frame writes one frame to Node: TYPE(1) ID(u32 BE) LENGTH(u32 BE) PAYLOAD. */
static void frame(char type, uint32_t id, const void *payload, size_t len) {
  static unsigned char buf[9 + READ_CHUNK];
  buf[0] = (unsigned char)type;
  put_u32(buf + 1, id);
  put_u32(buf + 5, (uint32_t)len);
  if (len <= READ_CHUNK) {
    memcpy(buf + 9, payload, len);
    write_all(buf, 9 + len);
    return;
  }
  write_all(buf, 9);
  write_all(payload, len);
}

static void frame_num(char type, uint32_t id, long n) {
  char s[32];
  int len = snprintf(s, sizeof s, "%ld", n);
  frame(type, id, s, (size_t)len);
}

/* cloexec marks an fd close-on-exec (portable: no pipe2 on macOS). */
static int pipe_cloexec(int p[2]) {
  if (pipe(p) != 0) return -1;
  fcntl(p[0], F_SETFD, FD_CLOEXEC);
  fcntl(p[1], F_SETFD, FD_CLOEXEC);
  return 0;
}

static void nonblocking(int fd) {
  int flags = fcntl(fd, F_GETFL, 0);
  if (flags >= 0) fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

static void close_fd(int *fd) {
  if (*fd >= 0) close(*fd);
  *fd = -1;
}

static void on_chld(int sig) {
  (void)sig;
  int saved = errno;
  if (write(sig_w, "x", 1) < 0) { /* the pipe is full: a wake-up is pending anyway */
  }
  errno = saved;
}

static struct kid *find(uint32_t id) {
  for (size_t i = 0; i < nkids; i++)
    if (kids[i].id == id) return &kids[i];
  return NULL;
}

/* What a program is started with: the strings point into the R frame's payload. */
struct spec {
  const char *cwd, *file;
  char **argv, **envp;
  int fds[3]; /* its stdin, stdout, stderr */
};

/* The vfork() child writes its errno here: it shares our memory until it execs or exits. */
static volatile int child_errno;

static void child(const struct spec *s) {
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (size_t i = 0; i < sizeof reset_signals / sizeof *reset_signals; i++)
    sigaction(reset_signals[i], &dfl, NULL);
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
  setsid();
  int in = s->fds[0];
  if (chdir(s->cwd) != 0) goto fail;
  if (in < 0 && (in = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0) goto fail;
  /* Every fd of ours is close-on-exec; dup2 clears that flag on 0, 1 and 2 only. */
  if (dup2(in, 0) < 0 || dup2(s->fds[1], 1) < 0 || dup2(s->fds[2], 2) < 0) goto fail;
  execve(s->file, s->argv, s->envp);
  if (errno == ENOEXEC) {
    /* As execvp and node's spawn: an executable without #! runs under /bin/sh. */
    size_t n = 0;
    while (s->argv[n]) n++;
    char *sh_argv[n + 2];
    sh_argv[0] = "/bin/sh";
    sh_argv[1] = (char *)s->file;
    for (size_t i = 1; i <= n; i++) sh_argv[i + 1] = s->argv[i];
    execve("/bin/sh", sh_argv, s->envp);
  }
fail:
  child_errno = errno ? errno : EINVAL;
  _exit(127);
}

/* spawn starts the program: its pid, or -errno. `fds` are the pipes' child ends. */
static pid_t spawn(const struct spec *s) {
  sigset_t all, old;
  sigfillset(&all);
  /* No handler of ours may run in the child while it shares our memory. */
  sigprocmask(SIG_SETMASK, &all, &old);
  child_errno = 0;
  pid_t pid = vfork();
  if (pid == 0) child(s);
  int e = pid < 0 ? errno : child_errno;
  sigprocmask(SIG_SETMASK, &old, NULL);
  if (e == 0) return pid;
  if (pid > 0) waitpid(pid, NULL, 0);
  return -e;
}

static int parse_u32(const char *s, uint32_t *out) {
  size_t n = strlen(s);
  if (n < 1 || n > 10) return 0;
  unsigned long long v = 0;
  for (size_t i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return 0;
    v = v * 10 + (unsigned)(s[i] - '0');
  }
  if (v > 0xffffffffu) return 0;
  *out = (uint32_t)v;
  return 1;
}

/* on_run handles R: NUL-separated stdin (0|1), cwd, executable, argc, argv..., KEY=VALUE... */
static void on_run(uint32_t id, char *payload, uint32_t len) {
  if (find(id)) return; /* Node never reuses the id of a program it still knows */
  size_t nfields = 1;
  for (uint32_t i = 0; i < len; i++)
    if (payload[i] == '\0') nfields++;
  char **f = malloc((nfields + 3) * sizeof *f);
  if (!f) die_errno("out of memory");
  f[0] = payload;
  for (uint32_t i = 0, k = 1; i < len; i++)
    if (payload[i] == '\0') f[k++] = payload + i + 1;
  uint32_t argc;
  if (nfields < 5 || !parse_u32(f[3], &argc) || argc < 1 || argc > nfields - 4) {
    free(f);
    frame_num('F', id, EINVAL);
    return;
  }
  /* argv and envp, each ended by a NULL, in one array. */
  char **v = malloc((nfields + 2) * sizeof *v);
  if (!v) die_errno("out of memory");
  memcpy(v, f + 4, argc * sizeof *v);
  v[argc] = NULL;
  size_t nenv = nfields - 4 - argc;
  memcpy(v + argc + 1, f + 4 + argc, nenv * sizeof *v);
  v[argc + 1 + nenv] = NULL;
  struct spec s = {f[1], f[2], v, v + argc + 1, {-1, -1, -1}};
  int want_in = strcmp(f[0], "1") == 0;
  free(f);
  int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
  pid_t pid;
  if ((want_in && pipe_cloexec(in) != 0) || pipe_cloexec(out) != 0 || pipe_cloexec(err) != 0) {
    pid = -errno;
  } else {
    s.fds[0] = in[0];
    s.fds[1] = out[1];
    s.fds[2] = err[1];
    pid = spawn(&s);
  }
  free(v);
  close_fd(&in[0]);
  close_fd(&out[1]);
  close_fd(&err[1]);
  if (pid < 0) {
    close_fd(&in[1]);
    close_fd(&out[0]);
    close_fd(&err[0]);
    frame_num('F', id, -pid);
    return;
  }
  for (int i = 0; i < 3; i++) {
    int fd = i == 0 ? in[1] : i == 1 ? out[0] : err[0];
    if (fd >= 0) nonblocking(fd);
  }
  kids = grow(kids, &cap_kids, nkids + 1, sizeof *kids);
  kids[nkids++] = (struct kid){.id = id, .pid = pid, .in = in[1], .out = out[0], .err = err[0]};
  frame_num('S', id, pid);
}

/* stdin_gone drops what was queued for a program's stdin and tells Node (Q) once. */
static void stdin_gone(struct kid *k, int e) {
  close_fd(&k->in);
  k->qoff = k->qlen = 0;
  if (!k->in_failed) {
    k->in_failed = 1;
    frame_num('Q', k->id, e);
  }
}

/* write_stdin writes what is queued for a program's stdin, as far as the pipe takes it, and
 * gives Node its credit back (W) for what was written. */
static void write_stdin(struct kid *k) {
  size_t done = 0;
  while (k->in >= 0 && k->qoff < k->qlen) {
    ssize_t n = write(k->in, k->queue + k->qoff, k->qlen - k->qoff);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN) stdin_gone(k, errno);
      break;
    }
    k->qoff += (size_t)n;
    done += (size_t)n;
  }
  if (k->qoff == k->qlen) k->qoff = k->qlen = 0;
  if (done > 0) frame_num('W', k->id, (long)done);
  if (k->in >= 0 && k->qlen == 0 && k->in_end) close_fd(&k->in);
}

/* on_frame handles one frame from Node. */
static void on_frame(char type, uint32_t id, char *payload, uint32_t len) {
  if (type == 'R') {
    on_run(id, payload, len);
    return;
  }
  struct kid *k = find(id);
  if (!k) return; /* it ended meanwhile */
  switch (type) {
  case 'I':
    if (k->in < 0) {
      stdin_gone(k, EPIPE);
      return;
    }
    k->queue = grow(k->queue, &k->qcap, k->qlen + len, 1);
    memcpy(k->queue + k->qlen, payload, len);
    k->qlen += len;
    write_stdin(k);
    return;
  case 'E':
    k->in_end = 1;
    if (k->qlen == 0) close_fd(&k->in);
    return;
  case 'P':
    k->paused = 1;
    return;
  case 'U':
    k->paused = 0;
    return;
  case 'K': /* Node gave up its output: the program now gets EPIPE, as from a closed socket */
    close_fd(&k->out);
    return;
  default:
    return;
  }
}

/* read_node reads what Node sent and handles every whole frame in it. */
static void read_node(void) {
  /* One byte more than can be read: a NUL goes after the last payload (see below). */
  ibuf = grow(ibuf, &icap, ilen + READ_CHUNK + 1, 1);
  ssize_t n = read(0, ibuf + ilen, READ_CHUNK);
  if (n == 0 || (n < 0 && errno != EINTR && errno != EAGAIN)) finish();
  if (n <= 0) return;
  ilen += (size_t)n;
  size_t at = 0;
  while (ilen - at >= 9) {
    uint32_t len = get_u32(ibuf + at + 5);
    if (len > MAX_FRAME) {
      fprintf(stderr, "fork-server: a frame of %u bytes from Node: giving up\n", len);
      finish();
    }
    if (ilen - at < 9 + (size_t)len) {
      ibuf = grow(ibuf, &icap, at + 9 + (size_t)len + 1, 1);
      break;
    }
    char type = (char)ibuf[at];
    uint32_t id = get_u32(ibuf + at + 1);
    char *payload = (char *)ibuf + at + 9;
    /* A NUL after the payload ends its last string (the byte after it is handled already). */
    unsigned char saved = ibuf[at + 9 + len];
    ibuf[at + 9 + len] = '\0';
    on_frame(type, id, payload, len);
    ibuf[at + 9 + len] = saved;
    at += 9 + (size_t)len;
  }
  memmove(ibuf, ibuf + at, ilen - at);
  ilen -= at;
}

/* read_pipe relays what a program wrote to its stdout or stderr (*fd) as `type` frames (D, O):
 * one read, or with drain all there is; at its end, an `end` frame (Z, C). */
static void read_pipe(struct kid *k, int *fd, char type, char end, int drain) {
  static char buf[READ_CHUNK];
  while (*fd >= 0) {
    ssize_t n = read(*fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) return;
    if (n > 0) {
      frame(type, k->id, buf, (size_t)n);
      if (drain) continue;
      return;
    }
    close_fd(fd);
    frame(end, k->id, "", 0);
  }
}

static void reap(void) {
  int status;
  pid_t pid;
  while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
    for (size_t i = 0; i < nkids; i++) {
      struct kid *k = &kids[i];
      if (k->pid != pid) continue;
      read_pipe(k, &k->err, 'O', 'C', 1);
      char how[32];
      int len = WIFSIGNALED(status) ? snprintf(how, sizeof how, "-1 %d", WTERMSIG(status))
                                    : snprintf(how, sizeof how, "%d 0", WEXITSTATUS(status));
      frame('X', k->id, how, (size_t)len);
      /* Processes it left in its group: Node ends them, unless Node dies first (finish). */
      if (kill(-pid, 0) == 0) {
        groups = grow(groups, &cap_groups, ngroups + 1, sizeof *groups);
        groups[ngroups++] = pid;
      }
      k->pid = 0;
      /* Nobody reads its stdin any more (a child it left behind could: it keeps it open). What
       * Node still sends fails as a write to a pipe with no reader would (Q). */
      if (k->in >= 0 && k->qlen == 0 && (k->in_end || kill(-pid, 0) != 0)) {
        if (k->in_end) close_fd(&k->in);
        else stdin_gone(k, EPIPE);
      }
      break;
    }
  }
  for (size_t i = 0; i < ngroups;)
    if (kill(-groups[i], 0) != 0) groups[i] = groups[--ngroups];
    else i++;
  for (size_t i = 0; i < nkids;) {
    struct kid *k = &kids[i];
    if (k->pid == 0 && k->out < 0 && k->err < 0 && (k->in < 0 || k->in_failed)) {
      close_fd(&k->in);
      free(k->queue);
      kids[i] = kids[--nkids];
    } else {
      i++;
    }
  }
}

/* Which kid and which of its pipes (0 stdin, 1 stdout, 2 stderr) a pollfd is: by id, because
 * the table changes while the events are handled. */
struct watch {
  uint32_t id;
  int which;
};

int main(int argc, char **argv) {
  (void)argv;
  if (argc != 1) {
    fprintf(stderr, "usage: fork-server (frames on stdin and stdout: see fork-server.pl)\n");
    return 2;
  }
  /* Node decides when this process ends (EOF on fd 0); a write to a gone Node fails (EPIPE). */
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_IGN;
  for (size_t i = 0; i < 5; i++) sigaction(reset_signals[i], &sa, NULL);
  int sp[2];
  if (pipe_cloexec(sp) != 0) die_errno("pipe");
  sig_r = sp[0];
  sig_w = sp[1];
  nonblocking(sig_r);
  nonblocking(sig_w);
  sa.sa_handler = on_chld;
  sa.sa_flags = SA_RESTART | SA_NOCLDSTOP;
  sigaction(SIGCHLD, &sa, NULL);
  /* fd 0 and 1 are Node's pipes: not inherited by programs (they get their own 0, 1, 2). */
  fcntl(0, F_SETFD, FD_CLOEXEC);
  fcntl(1, F_SETFD, FD_CLOEXEC);
  frame_num('R', 0, getpid());

  struct pollfd *pfd = NULL;
  size_t cap_pfd = 0;
  struct watch *who = NULL;
  size_t cap_who = 0;
  for (;;) {
    size_t n = 2 + 3 * nkids;
    pfd = grow(pfd, &cap_pfd, n, sizeof *pfd);
    who = grow(who, &cap_who, n, sizeof *who);
    size_t k = 0;
    pfd[k++] = (struct pollfd){0, POLLIN, 0};
    pfd[k++] = (struct pollfd){sig_r, POLLIN, 0};
    for (size_t i = 0; i < nkids; i++) {
      struct kid *c = &kids[i];
      if (c->out >= 0 && !c->paused) {
        who[k] = (struct watch){c->id, 1};
        pfd[k++] = (struct pollfd){c->out, POLLIN, 0};
      }
      if (c->err >= 0) {
        who[k] = (struct watch){c->id, 2};
        pfd[k++] = (struct pollfd){c->err, POLLIN, 0};
      }
      if (c->in >= 0 && c->qlen > c->qoff) {
        who[k] = (struct watch){c->id, 0};
        pfd[k++] = (struct pollfd){c->in, POLLOUT, 0};
      }
    }
    int ready = poll(pfd, k, ngroups ? 500 : -1);
    if (ready < 0) {
      if (errno == EINTR) continue;
      die_errno("poll");
    }
    if (pfd[1].revents) {
      char x[512];
      while (read(sig_r, x, sizeof x) > 0) {
      }
    }
    for (size_t i = 2; i < k; i++) {
      if (!pfd[i].revents) continue;
      struct kid *c = find(who[i].id);
      if (!c) continue;
      if (who[i].which == 1 && c->out == pfd[i].fd) read_pipe(c, &c->out, 'D', 'Z', 0);
      else if (who[i].which == 2 && c->err == pfd[i].fd) read_pipe(c, &c->err, 'O', 'C', 0);
      else if (who[i].which == 0 && c->in == pfd[i].fd) write_stdin(c);
    }
    /* Node's frames last: they may start programs (and so reuse closed fds' numbers). */
    if (pfd[0].revents) read_node();
    reap();
  }
}
