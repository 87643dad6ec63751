#!/usr/bin/perl
# form.pl: a classic Perl CGI form handler without CGI.pm: fields from the query string (GET)
# or the urlencoded body (POST, exactly CONTENT_LENGTH bytes from stdin, RFC 3875 §4.2).
use strict;
use warnings;

sub unescape {
  my ($s) = @_;
  $s =~ tr/+/ /;
  $s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
  return $s;
}

sub html {
  my ($s) = @_;
  $s =~ s/&/&amp;/g;
  $s =~ s/</&lt;/g;
  $s =~ s/>/&gt;/g;
  $s =~ s/"/&quot;/g;
  return $s;
}

my $method = $ENV{REQUEST_METHOD} // 'GET';
my $data = $ENV{QUERY_STRING} // '';
if ($method eq 'POST') {
  my $type = $ENV{CONTENT_TYPE} // '';
  if ($type !~ m{^application/x-www-form-urlencoded}i) {
    print "Status: 415 Unsupported Media Type\r\nContent-Type: text/plain\r\n\r\n";
    print "form.pl takes application/x-www-form-urlencoded, not $type\n";
    exit 0;
  }
  my $length = $ENV{CONTENT_LENGTH} // 0;
  $data = '';
  binmode STDIN;
  while (length($data) < $length) {
    my $n = read(STDIN, $data, $length - length($data), length($data));
    last unless $n;
  }
}

my @fields;
for my $pair (split /[&;]/, $data) {
  next if $pair eq '';
  my ($k, $v) = split /=/, $pair, 2;
  push @fields, [unescape($k), unescape($v // '')];
}

my $self = html($ENV{SCRIPT_NAME} // '');
print "Content-Type: text/html; charset=utf-8\r\n\r\n";
print "<!doctype html>\n<title>form.pl</title>\n<h1>A Perl form ($method)</h1>\n";
print "<form method=\"post\" action=\"$self\">\n";
print "<input name=\"name\" placeholder=\"name\"> <input name=\"color\" placeholder=\"color\">\n";
print "<button>POST</button>\n</form>\n";
print "<table>\n";
printf "<tr><th>%s</th><td>%s</td></tr>\n", html($_->[0]), html($_->[1]) for @fields;
print "</table>\n";
