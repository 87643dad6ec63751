#!/bin/sh
# env.sh: the environment a legacy CGI program gets: the request's meta-variables plus PATH
# and what --env/--inherit-env name, never cgi-bridge's own environment.
printf 'Content-Type: text/plain; charset=utf-8\r\n\r\n'
printf 'argv: %s\n\n' "$*"
env | LC_ALL=C sort
