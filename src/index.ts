// cgi-bridge: the library entry.
export type {
  Body,
  Chunk,
  Environ,
  ErrorStream,
  FileWrapper,
  GatewayApp,
  GatewayKeys,
  Header,
  InputStream,
  StartResponse,
  Write,
} from './gateway/types.js';
export { runApp, type ResponseWriter, type RunResult } from './gateway/handler.js';
export { BodyInput } from './gateway/input.js';
export { createErrorStream } from './gateway/error-stream.js';
export { fileWrapper, FileBody } from './gateway/file-wrapper.js';
export { validate, VALIDATION_RULES, type ValidationRule } from './gateway/validate.js';
export {
  buildEnviron,
  bodyLength,
  metaVariablesFromEnviron,
  type MetaVariables,
} from './cgi/environ.js';
export { metaVariablesFromHttp } from './cgi/http-meta.js';
export { runCgi, cgiMain, type AppHooks } from './cgi/child.js';
export { serve, type ServeOptions } from './serve.js';
export type { HttpServerHandle, HttpServerOptions, ServeHttpOptions } from './http/server.js';
export { BridgeError, isBridgeError } from './errors.js';
export { fromCgi, type CgiHostOptions, type CgiTarget } from './cgi/host.js';
