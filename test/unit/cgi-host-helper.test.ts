// The fromCgi suites once more with every program started by the fork server, where the suites
// themselves use the default (`auto`: direct spawning in a process this small): both spawners
// must pass all of them.
process.env.CGI_BRIDGE_SPAWN = 'helper';
await import('./cgi-host.test.js');
await import('./cgi-host-dir.test.js');
await import('./cgi-host-process.test.js');
