<?php
// The PHP peer of the FastCGI benchmark (bench/fastcgi.js), under php-fpm: hello world.
header('Content-Type: text/plain');
echo "hello world\n";
