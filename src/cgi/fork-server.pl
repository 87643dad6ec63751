#!/usr/bin/perl
# cgi-bridge's fork server, the spawning side of src/cgi/fork-server.ts (Apache mod_cgid's
# design): a small long-lived process that forks and execs CGI programs for one Node process,
# because a fork() of the big Node process makes it pay hundreds of copy-on-write faults per
# request afterwards. Perl with modules from Debian's perl-base only (Essential: no install step).
#
# Usage: perl fork-server.pl SOCKET. fd 0 and fd 1 are the control channel with Node: EOF on
# fd 0 means Node is gone (every live program's group then gets SIGKILL); fd 1 carries frames
# TYPE(1) ID(u32 BE) LENGTH(u32 BE) PAYLOAD:
#   R 0  pid            listening on SOCKET
#   S id pid            the program runs (its exec succeeded)
#   F id errno          it could not be started (the errno number of fork/chdir/exec)
#   O id bytes          output of its stderr
#   C id ''             its stderr ended
#   X id "code signal"  it exited (code -1 when killed by a signal)
# Per request Node connects to SOCKET and sends u32 BE LENGTH + NUL-separated fields:
#   R, id, stdin (0|1), cwd, executable, argc, argv..., KEY=VALUE...   (fd 1: this connection)
# and, when stdin is 1, a second connection with: I, id   (fd 0: that connection; the body
# follows the header on it). Two connections, because a write to a program that exited
# without reading its whole body fails (EPIPE), and node destroys a socket whose write failed:
# output still unread on the same socket would be lost. Exactly the header is read (the body
# follows it), then the connections belong to the program: ours are closed after fork, so Node
# sees EOF when the program, and whatever it left holding them, is done.
use strict;
use warnings;
use Errno qw(EINTR EAGAIN EINVAL);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK O_RDONLY);
use POSIX ();
use Socket qw(AF_UNIX MSG_DONTWAIT SOCK_STREAM SOMAXCONN pack_sockaddr_un);

my $path = shift @ARGV;
die "usage: fork-server.pl SOCKET\n" unless defined $path && $path ne '';
my ($dir) = $path =~ m{\A(.*)/[^/]+\z};

# Node decides when this process ends (EOF on fd 0): terminal and service-manager signals sent
# to Node's whole group must not end it while Node still drains requests. A write to a gone
# Node must fail (EPIPE) rather than kill it, so that its programs are still ended.
$SIG{$_} = 'IGNORE' for qw(PIPE INT QUIT HUP TERM);
my @RESET = qw(PIPE INT QUIT HUP TERM CHLD);

use constant MAX_HEADER => 4 * 1024 * 1024;

sub nonblocking {
  my ($fh) = @_;
  my $flags = fcntl($fh, F_GETFL, 0) or return;
  fcntl($fh, F_SETFL, $flags | O_NONBLOCK);
}

my (%watch, %kids, %groups);    # fileno => handler; pid => kid; pgid => 1 (leader gone)
my $rin = '';                   # the select() set: kept in step with %watch, not rebuilt per turn

sub watch {
  my ($fd, $handler) = @_;
  $watch{$fd} = $handler;
  vec($rin, $fd, 1) = 1;
}

sub unwatch {
  my ($fd) = @_;
  delete $watch{$fd};
  vec($rin, $fd, 1) = 0;
}
# The stderr pipes are plain fds (POSIX::pipe), not perl handles: a perl handle's set-up and
# tear-down write to a dozen pages, and every page written after a fork() is a copy-on-write
# fault, the very cost this process exists to cut. They are not close-on-exec: a child closes
# those in %raw itself.
my %raw;
my (%waiting, %halves);         # id => run request waiting for its stdin; id => stdin connection

sub finish {
  # Node is gone: nobody will end these programs or read their output.
  # A program that has not reached setsid() yet has no group: its pid is signalled too.
  kill 'KILL', -$_, $_ for keys %kids;
  kill 'KILL', -$_ for keys %groups;
  unlink $path;
  rmdir $dir if defined $dir;
  POSIX::_exit(0);
}

sub frame {
  my ($type, $id, $payload) = @_;
  my $buf = pack('a1 N N/a*', $type, $id, $payload // '');
  while (length $buf) {
    my $n = syswrite(STDOUT, $buf);
    if (!defined $n) {
      next if $! == EINTR;
      finish();
    }
    substr($buf, 0, $n, '');
  }
}

pipe(my $sig_r, my $sig_w) or die "fork-server: pipe: $!\n";
nonblocking($_) for $sig_r, $sig_w;
# select() is interrupted by SIGCHLD; a signal that arrives just before it wakes it up through
# this pipe. The short select timeout while programs run is the backstop for what is left.
$SIG{CHLD} = sub { syswrite($sig_w, 'x') };
watch(fileno $sig_r, sub { 1 while sysread($sig_r, my $x, 512) });

socket(my $listener, AF_UNIX, SOCK_STREAM, 0) or die "fork-server: socket: $!\n";
bind($listener, pack_sockaddr_un($path)) or die "fork-server: bind $path: $!\n";
listen($listener, SOMAXCONN) or die "fork-server: listen: $!\n";
watch(fileno $listener, \&accept_one);
watch(fileno STDIN, sub {
  my $n = sysread(STDIN, my $x, 4096);
  finish() if !defined $n ? $! != EINTR && $! != EAGAIN : $n == 0;
});
frame('R', 0, $$);

sub accept_one {
  my $conn;
  accept($conn, $listener) or return;
  my $c = { fh => $conn, buf => '' };
  watch(fileno $conn, sub { read_header($c) });
  # Node sends the header right after connecting: it is usually here already.
  read_header($c);
}

sub drop {
  my ($fh) = @_;
  unwatch(fileno $fh);
  close $fh;
}

sub drop_raw {
  my ($fd) = @_;
  unwatch($fd);
  delete $raw{$fd};
  POSIX::close($fd);
}

sub readable {
  my $v = '';
  vec($v, $_[0], 1) = 1;
  return select($v, undef, undef, 0) > 0;
}

# read_header reads the u32 length, then exactly that many bytes: never into the body. The
# connection stays blocking (it becomes the program's stdio), so reads here are MSG_DONTWAIT.
sub read_header {
  my ($c) = @_;
  while (1) {
    my $want = length $c->{buf} < 4 ? 4 : 4 + unpack('N', $c->{buf});
    last if length $c->{buf} == $want;
    my $got = recv($c->{fh}, my $chunk, $want - length $c->{buf}, MSG_DONTWAIT);
    if (!defined $got) {
      return if $! == EINTR || $! == EAGAIN;
      return drop($c->{fh});
    }
    return drop($c->{fh}) if $chunk eq '';    # Node gave up
    $c->{buf} .= $chunk;
    if (length $c->{buf} == 4) {
      my $len = unpack('N', $c->{buf});
      return drop($c->{fh}) if $len < 2 || $len > MAX_HEADER;
    }
  }
  unwatch(fileno $c->{fh});
  my @f = split /\0/, substr($c->{buf}, 4), -1;
  my $kind = shift @f // '';
  my $id = shift @f // '';
  return drop($c->{fh}) unless $id =~ /\A\d{1,10}\z/;
  if ($kind eq 'I') {
    my $run = delete $waiting{$id};
    return start($run, $c->{fh}) if $run;
    $halves{$id} = $c->{fh};
    return;
  }
  my ($stdin, $cwd, $file, $argc) = splice @f, 0, 4;
  if ($kind ne 'R' || !defined $argc || $argc !~ /\A\d+\z/ || $argc < 1 || $argc > @f) {
    frame('F', $id, EINVAL);
    return drop($c->{fh});
  }
  my $run = {
    id => $id, out => $c->{fh}, stdin => $stdin eq '1', cwd => $cwd, file => $file,
    argv => [ splice @f, 0, $argc ], env => \@f,
  };
  return start($run, undef) unless $run->{stdin};
  my $in = delete $halves{$id};
  return start($run, $in) if $in;
  $waiting{$id} = $run;
  # Anything readable on the output connection now is its end: Node gave up on the request.
  watch(fileno $run->{out}, sub {
    delete $waiting{$id};
    drop($run->{out});
  });
}

sub start {
  my ($run, $in) = @_;
  unwatch(fileno $run->{out});
  my ($status_r, $status_w, $err_r, $err_w);
  my $pid;
  if (pipe($status_r, $status_w) && (($err_r, $err_w) = POSIX::pipe())) {
    $pid = fork;
  }
  if (!$pid) {
    child($run, $in, $status_w, $err_r, $err_w) if defined $pid;
    frame('F', $run->{id}, $! + 0);
    close $_ for grep { defined } $run->{out}, $in, $status_r, $status_w;
    POSIX::close($_) for grep { defined } $err_r, $err_w;
    return;
  }
  close $_ for grep { defined } $run->{out}, $in, $status_w;
  POSIX::close($err_w);
  $raw{$err_r} = 1;
  my $kid = { id => $run->{id}, pid => $pid, status => $status_r, err => $err_r };
  $kids{$pid} = $kid;
  watch(fileno $status_r, sub { settle($kid) });
  watch($err_r, sub { settle($kid) unless $kid->{settled}; read_stderr($kid) });
}

# child runs in the forked process: a new session (its own process group, as node's
# `detached: true`), the request's cwd, the connections on fd 0 and 1, the stderr pipe on fd 2,
# default signals, and exec in list form, never a shell. (glibc's execvp, under perl's exec
# and libuv's alike, runs an executable without `#!` through /bin/sh.) A failure before or at
# exec is its errno on the close-on-exec status pipe (perl opens every fd above 2 cloexec).
sub child {
  my ($run, $in, $status_w, $err_r, $err_w) = @_;
  my $fail = sub {
    my $errno = ($_[0] // $!) + 0;
    syswrite($status_w, pack('N', $errno));
    POSIX::_exit(127);
  };
  $SIG{$_} = 'DEFAULT' for @RESET;
  POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new);
  POSIX::setsid();
  chdir $run->{cwd} or $fail->();
  my $in_fd = $in ? fileno $in : POSIX::open('/dev/null', O_RDONLY);
  defined $in_fd or $fail->();
  defined POSIX::dup2($in_fd, 0) or $fail->();
  defined POSIX::dup2(fileno $run->{out}, 1) or $fail->();
  defined POSIX::dup2($err_w, 2) or $fail->();
  POSIX::close($_) for $err_r, $err_w, keys %raw;
  %ENV = ();
  for (@{ $run->{env} }) {
    my ($k, $v) = split /=/, $_, 2;
    $ENV{$k} = $v // '';
  }
  my @argv = @{ $run->{argv} };
  exec { $run->{file} } @argv or $fail->();
}

# settle reads the status pipe: EOF means the exec succeeded (S), 4 bytes are its errno (F).
# It is called when the pipe is readable or the program is gone, so it never waits long.
sub settle {
  my ($kid) = @_;
  return if $kid->{settled};
  my $buf = '';
  while (length $buf < 4) {
    my $n = sysread($kid->{status}, $buf, 4 - length $buf, length $buf);
    next if !defined $n && $! == EINTR;
    last if !$n;
  }
  $kid->{settled} = 1;
  drop($kid->{status});
  if (length $buf == 4) {
    $kid->{failed} = 1;
    drop_raw($kid->{err});
    frame('F', $kid->{id}, unpack('N', $buf));
  } else {
    frame('S', $kid->{id}, $kid->{pid});
  }
}

# read_stderr relays what the program wrote to stderr; with $drain, all that is there now.
# POSIX::read returns "0 but true" at EOF, which is false as a number only: hence `$n > 0`.
sub read_stderr {
  my ($kid, $drain) = @_;
  return if $kid->{failed} || !defined $kid->{err};
  while (1) {
    # A blocking fd: read only what select() says is there.
    return if $drain && !readable($kid->{err});
    my $n = POSIX::read($kid->{err}, my $buf, 65536);
    next if !defined $n && $! == EINTR;
    if (defined $n && $n > 0) {
      frame('O', $kid->{id}, $buf);
      next if $drain;
      return;
    }
    drop_raw($kid->{err});
    delete $kid->{err};
    frame('C', $kid->{id}, '');
    return;
  }
}

sub reap {
  while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
    my $status = $?;
    my $kid = delete $kids{$pid} or next;
    settle($kid);
    next if $kid->{failed};
    read_stderr($kid, 1);
    my @how = POSIX::WIFSIGNALED($status) ? (-1, POSIX::WTERMSIG($status))
      : (POSIX::WEXITSTATUS($status), 0);
    frame('X', $kid->{id}, "@how");
    # Processes it left in its group: Node ends them, unless Node dies first (finish()).
    $groups{$pid} = 1 if kill 0, -$pid;
  }
  for my $pgid (keys %groups) {
    delete $groups{$pgid} unless kill 0, -$pgid;
  }
}

while (1) {
  my $timeout = %kids ? 0.02 : %groups ? 0.5 : undef;
  my $n = select(my $rout = $rin, undef, undef, $timeout);
  if ($n > 0) {
    # A handler may close an fd and the next accept reuse its number: a handler runs only if
    # it is still the one that was watching when select() returned.
    my @ready = map { [ $_, $watch{$_} ] } grep { vec($rout, $_, 1) } keys %watch;
    for (@ready) {
      my ($fd, $handler) = @$_;
      $handler->() if ($watch{$fd} // 0) == $handler;
    }
  }
  reap();
}
