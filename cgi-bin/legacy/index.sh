#!/bin/sh
# index.sh: links to the legacy CGI programs next to it.
here=${SCRIPT_NAME%/*}
printf 'Content-Type: text/html; charset=utf-8\r\n\r\n'
cat <<HTML
<!doctype html>
<title>legacy CGI programs</title>
<h1>Legacy CGI programs under cgi-bridge</h1>
<p>Shell and Perl scripts in <code>cgi-bin/legacy/</code>, run per request by <code>fromCgi</code>.</p>
<ul>
<li><a href="$here/hello.sh">hello.sh</a> - the smallest document response</li>
<li><a href="$here/env.sh/path/info?search+words">env.sh</a> - the environment a program gets</li>
<li><a href="$here/form.pl?name=Ada&amp;color=green">form.pl</a> - a Perl form (GET and POST)</li>
<li><a href="$here/redirect.sh">redirect.sh</a> - a local redirect to hello.sh
  (<a href="$here/redirect.sh?away">client redirect</a>)</li>
</ul>
HTML
