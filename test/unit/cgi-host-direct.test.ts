// The fromCgi suites once more with every program started directly (cross-spawn from this
// process: `--cgi-spawn direct`, and what `auto` does where no fork server can start), where
// the suites themselves use the default (`auto`: the C fork server where it was built; see
// cgi-host-helper-perl.test.ts for the Perl one): every spawner must pass all of them.
process.env.CGI_BRIDGE_SPAWN = 'direct';
await import('./cgi-host.test.js');
await import('./cgi-host-dir.test.js');
await import('./cgi-host-process.test.js');
