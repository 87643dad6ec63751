#!/bin/sh
# hello.sh: the smallest legacy CGI program (RFC 3875 §6.2.1: a document response).
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'hello from %s, a shell script run by cgi-bridge\n' "$SCRIPT_NAME"
