#!/usr/bin/env bash
# capture-params.sh - records the CGI meta-variables that real web servers send, byte-exact and
# in wire order, as the fixtures test/fixtures/params/<server>-<case>.json (see the README there).
#
#   scripts/capture-params.sh [OUT_DIR]        (default test/fixtures/params; needs root or a
#                                               user the lab scripts accept, and the lab servers)
#
# Not run by `npm test`: it starts real servers through the company lab scripts (LAB, default
# /work/shared/lab): nginx fastcgi_pass + fcgiwrap, Apache event (mod_cgid + mod_proxy_fcgi
# GENERIC), Apache prefork (mod_cgi + mod_proxy_fcgi FPM), lighttpd (mod_cgi + mod_fastcgi),
# all on 127.0.0.1, and stops each by its pid file on exit.
#
# FastCGI params come from lab/backends/fcgi-dump.js (every param in wire order, duplicates
# kept). CGI variables come from a CGI script that prints /proc/$$/environ: the environment
# block exactly as the server passed it to execve(2), in its order, with raw bytes.
set -eu -o pipefail
ME=${0##*/}
die() { echo "$ME: error: $*" >&2; exit 1; }

ROOT=$(cd "$(dirname "$0")/.." && pwd -P)
LAB=${LAB:-/work/shared/lab}
OUT=${1:-$ROOT/test/fixtures/params}
# A fixed work directory and fixed ports keep SCRIPT_FILENAME, DOCUMENT_ROOT, HTTP_HOST and
# SERVER_PORT stable between captures, so a re-run only changes what the servers changed.
WORK=${CAPTURE_DIR:-/tmp/cgi-bridge-params}
BASE_PORT=${CAPTURE_BASE_PORT:-18470}
P_DUMP=$BASE_PORT P_NGINX=$((BASE_PORT + 1)) P_EVENT=$((BASE_PORT + 2))
P_PREFORK=$((BASE_PORT + 3)) P_LIGHTTPD=$((BASE_PORT + 4)) P_NGINX_CONF=$((BASE_PORT + 5))
NODE=${NODE:-$(command -v node)}

[ -x "$LAB/nginx.sh" ] || die "no lab scripts in $LAB (set LAB=)"
for p in $P_DUMP $P_NGINX $P_EVENT $P_PREFORK $P_LIGHTTPD $P_NGINX_CONF; do
  if (exec 3<> "/dev/tcp/127.0.0.1/$p") 2> /dev/null; then die "port $p is in use (set CAPTURE_BASE_PORT=)"; fi
done

DUMP_PID=
cleanup() {
  "$LAB/nginx.sh" stop "$WORK/nginx" > /dev/null 2>&1 || true
  "$LAB/nginx.sh" stop "$WORK/nginx-conf" > /dev/null 2>&1 || true
  "$LAB/apache.sh" stop "$WORK/apache-event" > /dev/null 2>&1 || true
  "$LAB/apache.sh" stop "$WORK/apache-prefork" > /dev/null 2>&1 || true
  "$LAB/lighttpd.sh" stop "$WORK/lighttpd" > /dev/null 2>&1 || true
  if [ -n "$DUMP_PID" ]; then kill "$DUMP_PID" 2> /dev/null || true; fi
}
trap cleanup EXIT

# Stop whatever a previous, interrupted run left in WORK (by pid file), then start clean.
cleanup
rm -rf "$WORK"
mkdir -p "$WORK/cgi-bin" "$WORK/root" "$WORK/raw" "$OUT"
chmod 755 "$WORK" "$WORK/cgi-bin" "$WORK/root"
: > "$WORK/root/app.x" # Apache splits PATH_INFO by walking FCGI_ROOT: app.x must exist
cat > "$WORK/cgi-bin/app.x" << 'EOF'
#!/bin/sh
# Prints this script's environment block exactly as the server passed it to execve(2).
n=$(wc -c < /proc/$$/environ)
printf 'Content-Type: application/octet-stream\r\nX-Environ-Length: %s\r\n\r\n' "$n"
cat /proc/$$/environ
cat > /dev/null # drain the body (a chunked body under mod_cgid ends at EOF)
EOF
chmod 755 "$WORK/cgi-bin/app.x"

"$NODE" "$LAB/backends/fcgi-dump.js" --listen "tcp:127.0.0.1:$P_DUMP" > "$WORK/fcgi-dump.log" 2>&1 &
DUMP_PID=$!
FCGI="/fcgi=tcp:127.0.0.1:$P_DUMP"
COMMON=(--cgi-dir "$WORK/cgi-bin" --fcgi-root "$WORK/root" --fcgi "$FCGI")
"$LAB/nginx.sh" start "$WORK/nginx" --port "$P_NGINX" "${COMMON[@]}" --cgi-workers 1
# The classic misconfiguration: `include fastcgi.conf` (which sets SCRIPT_FILENAME to
# $document_root$fastcgi_script_name) plus a SCRIPT_FILENAME of one's own: nginx sends both.
# fastcgi.conf also lacks Debian's HTTP_HOST=$host patch, so HTTP_HOST keeps the port.
"$LAB/nginx.sh" start "$WORK/nginx-conf" --port "$P_NGINX_CONF" --fcgi-root "$WORK/root" --fcgi "$FCGI" \
  --fastcgi-params /etc/nginx/fastcgi.conf
"$LAB/apache.sh" start "$WORK/apache-event" --port "$P_EVENT" "${COMMON[@]}" --mpm event --backend-type GENERIC
"$LAB/apache.sh" start "$WORK/apache-prefork" --port "$P_PREFORK" "${COMMON[@]}" --mpm prefork --backend-type FPM
"$LAB/lighttpd.sh" start "$WORK/lighttpd" --port "$P_LIGHTTPD" "${COMMON[@]}"

# server name, port, route kind: cgi (/cgi-bin/app.x) or fcgi (/fcgi/app.x), and the cases
# (default: all of CASES)
SERVERS=(
  "nginx-fastcgi-conf $P_NGINX_CONF fcgi get dupheader"
  "nginx-fastcgi $P_NGINX fcgi"
  "nginx-fcgiwrap $P_NGINX cgi"
  "apache-proxy-fcgi-generic $P_EVENT fcgi"
  "apache-cgid $P_EVENT cgi"
  "apache-proxy-fcgi-fpm $P_PREFORK fcgi"
  "apache-cgi $P_PREFORK cgi"
  "lighttpd-fastcgi $P_LIGHTTPD fcgi"
  "lighttpd-cgi $P_LIGHTTPD cgi"
)

request() { # CASE URL_BASE OUTFILE
  local c=$1 u=$2 o=$3
  local -a a=(-sS --max-time 10 -o "$o" -D "$o.head")
  case $c in
    get) curl "${a[@]}" "$u/app.x/p%20q/r?a=1&b=%20" ;;
    post) curl "${a[@]}" --data-binary abc "$u/app.x/p%20q/r?a=1&b=%20" ;;
    chunked) printf abc | curl "${a[@]}" -H 'Transfer-Encoding: chunked' --data-binary @- "$u/app.x/p%20q/r?a=1&b=%20" ;;
    # UTF-8 and a lone 0xFF in the path (percent-encoded), and the same raw bytes in a header.
    bytes) curl "${a[@]}" -H $'X-Bytes: caf\xc3\xa9 \xff' "$u/app.x/caf%C3%A9/%FF" ;;
    # The same with 0x80 (lighttpd refuses %FF in a path with 400 but passes %80).
    bytes80) curl "${a[@]}" -H $'X-Bytes: caf\xc3\xa9 \x80' "$u/app.x/caf%C3%A9/%80" ;;
    proxy) curl "${a[@]}" -H 'Proxy: evil' "$u/app.x/p" ;;
    underscore) curl "${a[@]}" -H 'X_Under: 1' -H 'X-Dash: 2' "$u/app.x/p" ;;
    # Repeated headers, and a header that differs from another only by '_' for '-'.
    dupheader) curl "${a[@]}" -H 'X-Multi: 1' -H 'X-Multi: 2' -H 'Cookie: a=1' -H 'Cookie: b=2' \
      -H 'X-Forwarded-For: 192.0.2.1' -H 'X_Forwarded_For: 198.51.100.66' "$u/app.x/p" ;;
    *) die "unknown case $c" ;;
  esac
}

CASES=(get post chunked bytes bytes80 proxy underscore dupheader)
REFUSED=()
for s in "${SERVERS[@]}"; do
  read -r name port kind cases <<< "$s"
  read -r -a these <<< "${cases:-${CASES[*]}}"
  base="http://127.0.0.1:$port/$([ "$kind" = cgi ] && echo cgi-bin || echo fcgi)"
  for c in "${these[@]}"; do
    raw="$WORK/raw/$name-$c.$kind"
    request "$c" "$base" "$raw"
    status=$(head -n 1 "$raw.head" | cut -d ' ' -f 2)
    if [ "$status" != 200 ]; then
      # The server refused the request itself: nothing reaches a backend, so no fixture.
      REFUSED+=("  \"$name-$c\": $status")
      rm -f "$OUT/$name-$c.json"
      continue
    fi
    "$NODE" --input-type=module - "$raw" "$kind" "$OUT/$name-$c.json" << 'EOF'
// Turns one captured response into a fixture: [[name, value], ...] in wire order, where a name
// or value that is not valid UTF-8 is kept as {"base64": "..."} (README.md in the fixtures dir).
import { readFileSync, writeFileSync } from 'node:fs';
const [raw, kind, out] = process.argv.slice(2);
const head = readFileSync(`${raw}.head`, 'latin1');
const body = readFileSync(raw);
const entries = [];
if (kind === 'cgi') {
  const m = /^x-environ-length: (\d+)\r?$/im.exec(head);
  if (!m) throw new Error(`${raw}: no X-Environ-Length header`);
  const block = body.subarray(0, Number(m[1]));
  let start = 0;
  for (let i = 0; i < block.length; i++) {
    if (block[i] !== 0) continue;
    const entry = block.subarray(start, i);
    const eq = entry.indexOf(0x3d);
    if (eq < 0) throw new Error(`${raw}: an environment entry without "="`);
    entries.push([entry.subarray(0, eq), entry.subarray(eq + 1)]);
    start = i + 1;
  }
} else {
  // fcgi-dump.js reads each param as latin-1 and writes its text as UTF-8: reading the text
  // back as UTF-8 and each char as one latin-1 byte recovers the exact wire bytes.
  const lines = body.toString('utf8').split('\n');
  const at = lines.findIndex((l) => /^--- params \(\d+, wire order\)$/.test(l));
  if (at < 0) throw new Error(`${raw}: no params section`);
  const n = Number(/\d+/.exec(lines[at])[0]);
  if (!lines[at + n + 1]?.startsWith('--- ')) throw new Error(`${raw}: a param value holds a newline`);
  for (const line of lines.slice(at + 1, at + 1 + n)) {
    const bytes = Buffer.from(line, 'latin1');
    const eq = bytes.indexOf(0x3d);
    entries.push([bytes.subarray(0, eq), bytes.subarray(eq + 1)]);
  }
}
const text = (b) => {
  const s = b.toString('utf8');
  return Buffer.from(s, 'utf8').equals(b) ? s : { base64: b.toString('base64') };
};
const pairs = entries.map(([k, v]) => [text(k), text(v)]);
writeFileSync(out, `[\n${pairs.map((p) => `  ${JSON.stringify(p)}`).join(',\n')}\n]\n`);
console.log(`${out}: ${pairs.length} variables`);
EOF
  done
done
# refused.json: the requests a server answered itself (a 4xx) instead of passing them on.
{
  echo '{'
  (IFS=$'\n'; echo "${REFUSED[*]}" | sed '$!s/$/,/')
  echo '}'
} > "$OUT/refused.json"
# The project's format check covers JSON: write the fixtures the way prettier would.
if [ -x "$ROOT/node_modules/.bin/prettier" ]; then
  "$ROOT/node_modules/.bin/prettier" --log-level warn --write "$OUT"/*.json
fi
echo "$ME: done; fixtures in $OUT"
