<?php
// The PHP peer of the FastCGI benchmark (bench/fastcgi.js), under php-fpm: the request body
// read whole, then sent back.
$body = file_get_contents('php://input');
header('Content-Type: application/octet-stream');
header('Content-Length: ' . strlen($body));
echo $body;
