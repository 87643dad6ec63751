// The fromCgi suites once more with every program started by the Perl fork server (the one used
// where no C compiler built fork-server.c); the suites themselves run them through the
// default one (the C fork server where it was built), cgi-host-direct.test.ts without one.
process.env.CGI_BRIDGE_SPAWN = 'helper';
process.env.CGI_BRIDGE_FORK_SERVER = 'perl';
await import('./cgi-host.test.js');
await import('./cgi-host-dir.test.js');
await import('./cgi-host-process.test.js');
