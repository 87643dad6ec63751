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
export { buildEnviron, bodyLength, metaVariablesFromEnviron, type MetaVariables } from './cgi/environ.js';
export { metaVariablesFromHttp } from './cgi/http-meta.js';
export { runCgi, cgiMain, type AppHooks } from './cgi/child.js';
export { BridgeError, isBridgeError } from './errors.js';
