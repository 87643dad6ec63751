#!/usr/bin/env node
// The cgi-bridge executable. `cgi-bridge cgi TARGET` is the CGI request path, paid on every
// request: it imports only the CGI child and the target loader (never yargs or server code).
// Every other command line goes through the yargs CLI in dist/src/cli/main.js.
const args = process.argv.slice(2);

if (args[0] === 'cgi' && args.length === 2 && !args[1].startsWith('-')) {
  const [{ cgiMain }, { loadTarget }] = await Promise.all([
    import('../dist/src/cgi/child.js'),
    import('../dist/src/server/load-target.js'),
  ]);
  let target;
  try {
    target = await loadTarget(args[1]);
  } catch (e) {
    const message = String(e instanceof Error ? e.message : e).split('\n')[0];
    process.stderr.write(
      `${message.startsWith('cgi-bridge:') ? message : `cgi-bridge: ${message}`}\n`,
    );
    process.exit(2);
  }
  await cgiMain(target.app, target);
} else {
  const { main } = await import('../dist/src/cli/main.js');
  process.exit(await main(args));
}
