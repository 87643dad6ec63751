// How CGI programs are started: fromCgi's `spawn` option and the two environment variables that
// set defaults for it. Kept apart from fork-server.ts, which fromCgi loads only at the first
// request, so that a bad value is refused when the app is built.
import { BridgeError } from '../errors.js';

/**
 * CgiSpawn chooses how CGI programs are started: `helper` through the fork server, `direct` with
 * cross-spawn from this process, `auto` (the default) the fork server when it is the compiled
 * one, or when this process is large (see AUTO_HELPER_RSS in cgi-program.ts) and the Perl one
 * can start (perl found, not Windows), otherwise direct.
 */
export type CgiSpawn = 'auto' | 'helper' | 'direct';

/**
 * ForkServerKind is which fork server runs: `c`, fork-server.c as compiled at install or build
 * time (when a C compiler was there; it starts programs with vfork(), at a fraction of the Perl
 * one's cost), or `perl`, fork-server.pl (perl-base only). `CGI_BRIDGE_FORK_SERVER=c|perl`
 * names one; `auto` (the default) is the C one when it was built, else the Perl one.
 */
export type ForkServerKind = 'c' | 'perl';

function badOption(name: string, allowed: string, v: unknown): BridgeError {
  return new BridgeError(
    'CGI_ERR_BAD_OPTION',
    `cgi: fromCgi ${name} must be ${allowed}, not ${JSON.stringify(v)}`,
  );
}

/**
 * spawnOption checks fromCgi's `spawn`; without one, `CGI_BRIDGE_SPAWN` from the environment
 * decides, else `auto`. It checks `CGI_BRIDGE_FORK_SERVER` too.
 */
export function spawnOption(given: unknown): CgiSpawn {
  forkServerKind();
  const env = process.env.CGI_BRIDGE_SPAWN;
  const [v, name] = given !== undefined ? [given, 'spawn'] : [env || 'auto', 'CGI_BRIDGE_SPAWN'];
  if (v === 'auto' || v === 'helper' || v === 'direct') return v;
  throw badOption(name, 'auto, helper or direct', v);
}

/** forkServerKind is `CGI_BRIDGE_FORK_SERVER`: `c`, `perl` or (unset, empty) `auto`. */
export function forkServerKind(): ForkServerKind | 'auto' {
  const v = process.env.CGI_BRIDGE_FORK_SERVER || 'auto';
  if (v === 'auto' || v === 'c' || v === 'perl') return v;
  throw badOption('CGI_BRIDGE_FORK_SERVER', 'c, perl or auto', v);
}
