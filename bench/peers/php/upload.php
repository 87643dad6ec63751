<?php
// The PHP peer of the FastCGI benchmark (bench/fastcgi.js), under php-fpm: the request body
// read in 64 KiB pieces and counted (the pool sets enable_post_data_reading=Off, so
// php://input streams from the web server instead of being spooled first).
$in = fopen('php://input', 'rb');
$n = 0;
while (!feof($in)) {
    $n += strlen(fread($in, 65536));
}
header('Content-Type: text/plain');
echo $n, "\n";
