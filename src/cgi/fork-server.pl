#!/usr/bin/perl
# cgi-bridge's fork server, the spawning side of src/cgi/fork-server.ts (Apache mod_cgid's
# design): a small long-lived process that starts CGI programs for one Node process, because a
# fork() of the big Node process makes it pay hundreds of copy-on-write faults per request
# afterwards. This is the Perl one, with modules from Debian's perl-base only (Essential: no
# install step); fork-server.c speaks the same protocol and is used where it was compiled.
#
# Usage: perl fork-server.pl. Everything goes over fd 0 (from Node) and fd 1 (to Node), in
# frames TYPE(1) ID(u32 BE) LENGTH(u32 BE) PAYLOAD; EOF on fd 0 means Node is gone (every live
# program's group then gets SIGKILL). A program's stdin, stdout and stderr are pipes to this
# process, so Node holds no file descriptor per program.
# From Node:
#   R id fields   start a program; NUL-separated: stdin (0|1), cwd, executable, argc, argv...,
#                 KEY=VALUE... (stdin 0: /dev/null)
#   I id bytes    bytes for its stdin          E id ''   end of its stdin (the pipe is closed)
#   P id ''       stop reading its stdout      U id ''   read it again
#   K id ''       close its stdout (Node gave up the output: the program gets EPIPE)
# To Node:
#   R 0  pid            ready
#   S id pid            the program runs (its exec succeeded)
#   F id errno          it could not be started (the errno number of pipe/fork/chdir/exec)
#   D id bytes          output of its stdout      Z id ''   its stdout ended
#   O id bytes          output of its stderr      C id ''   its stderr ended
#   W id n              n bytes of its stdin were written (Node keeps at most a window unsent)
#   Q id errno          its stdin is gone (EPIPE): what was queued is dropped, the rest refused
#   X id "code signal"  it exited (code -1 when killed by a signal)
use strict;
use warnings;
use Errno qw(EINTR EAGAIN EPIPE EINVAL);
use Fcntl qw(F_GETFL F_SETFL O_NONBLOCK O_RDONLY);
use POSIX ();

die "usage: fork-server.pl (frames on stdin and stdout)\n" if @ARGV;

# Node decides when this process ends (EOF on fd 0): terminal and service-manager signals sent
# to Node's whole group must not end it while Node still drains requests. A write to a gone
# Node must fail (EPIPE) rather than kill it, so that its programs are still ended.
$SIG{$_} = 'IGNORE' for qw(PIPE INT QUIT HUP TERM);
my @RESET = qw(PIPE INT QUIT HUP TERM CHLD);

use constant MAX_FRAME => 4 * 1024 * 1024;
use constant CHUNK => 65536;

my (%kids, %groups);    # id => kid; pgid => 1 (a leader gone, members left)

sub nonblocking {
  my ($fh) = @_;
  my $flags = fcntl($fh, F_GETFL, 0) or return;
  fcntl($fh, F_SETFL, $flags | O_NONBLOCK);
}

sub finish {
  # Node is gone: nobody will end these programs or read their output.
  # A program that has not reached setsid() yet has no group: its pid is signalled too.
  for my $k (values %kids) {
    kill 'KILL', -$k->{pid}, $k->{pid} if $k->{pid};
  }
  kill 'KILL', -$_ for keys %groups;
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
# this pipe.
$SIG{CHLD} = sub { syswrite($sig_w, 'x') };
frame('R', 0, $$);

# child runs in the forked process: a new session (its own process group, as node's
# `detached: true`), the request's cwd, the pipes on fd 0, 1 and 2, default signals, and exec
# in list form, never a shell. (glibc's execvp, under perl's exec and libuv's alike, runs an
# executable without `#!` through /bin/sh.) A failure before or at exec is its errno on the
# close-on-exec status pipe (perl opens every fd above 2 close-on-exec).
sub child {
  my ($run, $status_w) = @_;
  my $fail = sub {
    syswrite($status_w, pack('N', $! + 0));
    POSIX::_exit(127);
  };
  $SIG{$_} = 'DEFAULT' for @RESET;
  POSIX::sigprocmask(POSIX::SIG_SETMASK(), POSIX::SigSet->new);
  POSIX::setsid();
  chdir $run->{cwd} or $fail->();
  my $in_fd = $run->{in_r} ? fileno $run->{in_r} : POSIX::open('/dev/null', O_RDONLY);
  defined $in_fd or $fail->();
  defined POSIX::dup2($in_fd, 0) or $fail->();
  defined POSIX::dup2(fileno $run->{out_w}, 1) or $fail->();
  defined POSIX::dup2(fileno $run->{err_w}, 2) or $fail->();
  %ENV = ();
  for (@{ $run->{env} }) {
    my ($k, $v) = split /=/, $_, 2;
    $ENV{$k} = $v // '';
  }
  my @argv = @{ $run->{argv} };
  exec { $run->{file} } @argv or $fail->();
}

sub on_run {
  my ($id, $payload) = @_;
  return if $kids{$id};    # Node never reuses the id of a program it still knows
  my @f = split /\0/, $payload, -1;
  my ($stdin, $cwd, $file, $argc) = splice @f, 0, 4;
  if (!defined $argc || $argc !~ /\A\d{1,10}\z/ || $argc < 1 || $argc > @f) {
    return frame('F', $id, EINVAL);
  }
  my $run = { cwd => $cwd, file => $file, argv => [ splice @f, 0, $argc ], env => \@f };
  my ($ok, $pid, $status_r, $status_w) = (1);
  $ok &&= pipe($run->{in_r}, $run->{in_w}) if $stdin eq '1';
  $ok &&= pipe($run->{out_r}, $run->{out_w});
  $ok &&= pipe($run->{err_r}, $run->{err_w});
  $ok &&= pipe($status_r, $status_w);
  $pid = fork if $ok;
  my $errno = $! + 0;
  child($run, $status_w) if defined $pid && $pid == 0;
  close $_ for grep { defined } @$run{qw(in_r out_w err_w)}, $status_w;
  if ($pid) {
    # EOF: the exec succeeded; 4 bytes: its errno. The child gets there at once.
    my $buf = '';
    while (length $buf < 4) {
      my $n = sysread($status_r, $buf, 4 - length $buf, length $buf);
      next if !defined $n && $! == EINTR;
      last if !$n;
    }
    if (length $buf == 4) {
      $errno = unpack('N', $buf);
      waitpid($pid, 0);
      $pid = undef;
    }
  }
  close $status_r if defined $status_r;
  if (!$pid) {
    close $_ for grep { defined } @$run{qw(in_w out_r err_r)};
    return frame('F', $id, $errno || EINVAL);
  }
  nonblocking($_) for grep { defined } @$run{qw(in_w out_r err_r)};
  $kids{$id} = {
    id => $id, pid => $pid, in => $run->{in_w}, out => $run->{out_r}, err => $run->{err_r},
    queue => '', paused => 0, in_end => 0, in_failed => 0,
  };
  frame('S', $id, $pid);
}

# stdin_gone drops what was queued for a program's stdin and tells Node (Q) once.
sub stdin_gone {
  my ($k, $errno) = @_;
  close $k->{in} if $k->{in};
  $k->{in} = undef;
  $k->{queue} = '';
  return if $k->{in_failed}++;
  frame('Q', $k->{id}, $errno);
}

# write_stdin writes what is queued, as far as the pipe takes it, and gives Node its credit back.
sub write_stdin {
  my ($k) = @_;
  my $done = 0;
  while ($k->{in} && length $k->{queue}) {
    my $n = syswrite($k->{in}, $k->{queue});
    if (!defined $n) {
      next if $! == EINTR;
      stdin_gone($k, $! + 0) if $! != EAGAIN;
      last;
    }
    substr($k->{queue}, 0, $n, '');
    $done += $n;
  }
  frame('W', $k->{id}, $done) if $done;
  if ($k->{in} && !length $k->{queue} && $k->{in_end}) {
    close $k->{in};
    $k->{in} = undef;
  }
}

sub on_frame {
  my ($type, $id, $payload) = @_;
  return on_run($id, $payload) if $type eq 'R';
  my $k = $kids{$id} or return;    # it ended meanwhile
  if ($type eq 'I') {
    return stdin_gone($k, EPIPE) unless $k->{in};
    $k->{queue} .= $payload;
    write_stdin($k);
  } elsif ($type eq 'E') {
    $k->{in_end} = 1;
    if ($k->{in} && !length $k->{queue}) {
      close $k->{in};
      $k->{in} = undef;
    }
  } elsif ($type eq 'P') {
    $k->{paused} = 1;
  } elsif ($type eq 'U') {
    $k->{paused} = 0;
  } elsif ($type eq 'K') {
    close $k->{out} if $k->{out};
    $k->{out} = undef;
  }
}

my $ibuf = '';

sub read_node {
  my $n = sysread(STDIN, $ibuf, CHUNK, length $ibuf);
  finish() if !defined $n ? $! != EINTR && $! != EAGAIN : $n == 0;
  while (length $ibuf >= 9) {
    my ($type, $id, $len) = unpack('a1 N N', $ibuf);
    if ($len > MAX_FRAME) {
      warn "fork-server: a frame of $len bytes from Node: giving up\n";
      finish();
    }
    last if length $ibuf < 9 + $len;
    my $payload = substr($ibuf, 9, $len);
    substr($ibuf, 0, 9 + $len, '');
    on_frame($type, $id, $payload);
  }
}

# read_pipe relays one read of a program's stdout or stderr (TYPE), or its end (END); with
# $drain, all that is there now.
sub read_pipe {
  my ($k, $which, $type, $end, $drain) = @_;
  while (my $fh = $k->{$which}) {
    my $n = sysread($fh, my $buf, CHUNK);
    if (!defined $n) {
      next if $! == EINTR;
      return if $! == EAGAIN;
    }
    if ($n) {
      frame($type, $k->{id}, $buf);
      next if $drain;
      return;
    }
    close $fh;
    $k->{$which} = undef;
    frame($end, $k->{id}, '');
  }
}

sub reap {
  while ((my $pid = waitpid(-1, POSIX::WNOHANG())) > 0) {
    my $status = $?;
    my ($k) = grep { $_->{pid} && $_->{pid} == $pid } values %kids;
    next unless $k;
    read_pipe($k, 'err', 'O', 'C', 1);
    my @how = POSIX::WIFSIGNALED($status) ? (-1, POSIX::WTERMSIG($status))
      : (POSIX::WEXITSTATUS($status), 0);
    frame('X', $k->{id}, "@how");
    # Processes it left in its group: Node ends them, unless Node dies first (finish()).
    my $left = kill 0, -$pid;
    $groups{$pid} = 1 if $left;
    $k->{pid} = 0;
    # Nobody reads its stdin any more (a process it left behind could: then it stays open).
    # What Node still sends fails as a write to a pipe with no reader would (Q).
    if ($k->{in} && !length $k->{queue} && ($k->{in_end} || !$left)) {
      if ($k->{in_end}) {
        close $k->{in};
        $k->{in} = undef;
      } else {
        stdin_gone($k, EPIPE);
      }
    }
  }
  for my $pgid (keys %groups) {
    delete $groups{$pgid} unless kill 0, -$pgid;
  }
  for my $k (values %kids) {
    next if $k->{pid} || $k->{out} || $k->{err} || ($k->{in} && !$k->{in_failed});
    close $k->{in} if $k->{in};
    delete $kids{ $k->{id} };
  }
}

while (1) {
  my ($rin, $win) = ('', '');
  vec($rin, fileno STDIN, 1) = 1;
  vec($rin, fileno $sig_r, 1) = 1;
  for my $k (values %kids) {
    vec($rin, fileno $k->{out}, 1) = 1 if $k->{out} && !$k->{paused};
    vec($rin, fileno $k->{err}, 1) = 1 if $k->{err};
    vec($win, fileno $k->{in}, 1) = 1 if $k->{in} && length $k->{queue};
  }
  my $n = select(my $rout = $rin, my $wout = $win, undef, %groups ? 0.5 : undef);
  if ($n > 0) {
    1 while sysread($sig_r, my $x, 512);
    # By id: a handler may end a program (and its pipes) while the others are handled.
    for my $id (keys %kids) {
      my $k = $kids{$id} or next;
      read_pipe($k, 'out', 'D', 'Z') if $k->{out} && vec($rout, fileno $k->{out}, 1);
      read_pipe($k, 'err', 'O', 'C') if $k->{err} && vec($rout, fileno $k->{err}, 1);
      write_stdin($k) if $k->{in} && vec($wout, fileno $k->{in}, 1);
    }
    # Node's frames last: they may start programs (and so reuse closed fds' numbers).
    read_node() if vec($rout, fileno STDIN, 1);
  }
  reap();
}
