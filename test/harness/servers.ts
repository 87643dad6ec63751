// The integration-test harness: real Apache, lighttpd, nginx (+fcgiwrap) and spawn-fcgi on
// 127.0.0.1, each in its own state dir inside a temporary World, stopped by PID.
//
//   import { makeWorld, requireTool, startApache, httpRequest } from '../harness/servers.js';
//
//   test('apache cgi', async (t) => {
//     if (!requireTool(t, 'apache2')) return;
//     const world = await makeWorld();
//     t.after(() => world.cleanup());
//     const cgiDir = await world.copyFixtures('test/fixtures/cgi');
//     const apache = await startApache(world, { cgiDir });
//     const res = await httpRequest(`${apache.url}/cgi-bin/env.sh`);
//   });
//
// Everything is safe to run as root: workers, CGI scripts and spawned apps then run as
// www-data, which is why fixtures are copied into the world (mode 0755 all the way).
export { startApache, type ApacheOptions, type FcgidRoute } from './apache.js';
export type { FcgiRoute } from './config-utils.js';
export {
  DEBIAN_FASTCGI_PARAMS,
  SYSTEM_FASTCGI_PARAMS,
  writeFastcgiParams,
} from './fastcgi-params.js';
export {
  httpRequest,
  keepAliveClient,
  type HttpRequestOptions,
  type HttpResponse,
  type KeepAliveClient,
} from './http-client.js';
export { startLighttpd, type LighttpdOptions, type LighttpdSpawnRoute } from './lighttpd.js';
export { cleanEnv, type RunningServer } from './managed-server.js';
export {
  canConnect,
  freePort,
  parseTarget,
  waitForListen,
  type ListenTarget,
  type ParsedTarget,
} from './net-utils.js';
export { startNginx, type NginxOptions } from './nginx.js';
export { descendantsOf, isProcessAlive, readProcStat, sleep } from './process-utils.js';
export { isRoot, runUser, userCan, type RunUser } from './run-user.js';
export {
  resolveCommand,
  startSpawnFcgi,
  type SpawnFcgiOptions,
  type SpawnedFcgiApp,
} from './spawn-fcgi.js';
export { CLEAN_PATH, findTool, requireTool } from './tools.js';
export { makeWorld, type Stoppable, type World } from './world.js';
