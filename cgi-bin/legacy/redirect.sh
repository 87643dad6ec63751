#!/bin/sh
# redirect.sh: a local redirect (RFC 3875 §6.2.2): the server fetches hello.sh itself, the
# client sees hello.sh's answer under this URL. ?away gives a client redirect (§6.2.3) instead.
here=${SCRIPT_NAME%/*}
if [ "$QUERY_STRING" = away ]; then
  printf 'Location: http://%s:%s%s/hello.sh\r\n\r\n' "$SERVER_NAME" "$SERVER_PORT" "$here"
else
  printf 'Location: %s/hello.sh\r\n\r\n' "$here"
fi
