// `--config FILE` for every command: a .json or .ini file whose keys are the long flags
// (`listen`, `max-body`, `env` …). YAML is not read: it would need a parser dependency.
import { readFileSync } from 'node:fs';
import { extname } from 'node:path';
import { BridgeError } from '../errors.js';

/** ConfigValues are a config file's keys (long flag names) and their values. */
export type ConfigValues = Record<string, string | number | boolean | string[]>;

function badConfig(file: string, why: string, cause?: unknown): BridgeError {
  return new BridgeError('CLI_ERR_BAD_CONFIG', `cgi-bridge: config file ${file}: ${why}`, {
    cause,
  });
}

/**
 * parseIni reads the INI dialect of config files: `key = value` lines, `#` or `;` comments on
 * their own lines, optional double quotes around a value, a repeated key (or `key[] = v`)
 * collecting a list (`env`), and an optional `[cgi-bridge]` section (uWSGI's habit of one
 * section per tool). Other sections are refused rather than silently ignored.
 */
export function parseIni(text: string, file = 'config'): ConfigValues {
  const out: ConfigValues = {};
  const lines = text.split(/\r?\n/);
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const section = /^\[([^\]]*)\]$/.exec(line);
    if (section) {
      if (section[1]!.trim() !== 'cgi-bridge') {
        throw badConfig(file, `line ${i + 1}: unknown section [${section[1]}] (only [cgi-bridge])`);
      }
      continue;
    }
    const eq = line.indexOf('=');
    if (eq <= 0) throw badConfig(file, `line ${i + 1}: expected "key = value"`);
    let key = line.slice(0, eq).trim();
    let value = line.slice(eq + 1).trim();
    const list = key.endsWith('[]');
    if (list) key = key.slice(0, -2).trim();
    if (!/^[A-Za-z][A-Za-z0-9-]*$/.test(key)) {
      throw badConfig(file, `line ${i + 1}: ${JSON.stringify(key)} is not an option name`);
    }
    if (value.length >= 2 && value.startsWith('"') && value.endsWith('"'))
      value = value.slice(1, -1);
    const prev = out[key];
    if (prev === undefined) out[key] = list ? [value] : value;
    else out[key] = [...(Array.isArray(prev) ? prev : [String(prev)]), value];
  }
  return out;
}

function checkJson(file: string, data: unknown): ConfigValues {
  if (data === null || typeof data !== 'object' || Array.isArray(data)) {
    throw badConfig(file, 'the top level must be an object of option names');
  }
  for (const [key, value] of Object.entries(data)) {
    const ok =
      typeof value === 'string' ||
      typeof value === 'number' ||
      typeof value === 'boolean' ||
      (Array.isArray(value) && value.every((v) => typeof v === 'string'));
    if (!ok)
      throw badConfig(
        file,
        `${JSON.stringify(key)} must be a string, number, boolean or list of strings`,
      );
  }
  return data as ConfigValues;
}

/**
 * loadConfigFile reads a `--config` file by its extension: `.json` or `.ini`. A `.yaml`/`.yml`
 * file, an unreadable file or a syntax error is a `CLI_ERR_BAD_CONFIG` error.
 */
export function loadConfigFile(file: string): ConfigValues {
  const ext = extname(file).toLowerCase();
  if (ext === '.yaml' || ext === '.yml') {
    throw badConfig(file, 'YAML is not supported (no YAML parser is bundled); use .json or .ini');
  }
  if (ext !== '.json' && ext !== '.ini') {
    throw badConfig(file, 'the name must end in .json or .ini');
  }
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (e) {
    throw badConfig(file, `cannot read it (${(e as NodeJS.ErrnoException).code ?? String(e)})`, e);
  }
  if (ext === '.ini') return parseIni(text, file);
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (e) {
    throw badConfig(file, `not valid JSON: ${(e as Error).message}`, e);
  }
  return checkJson(file, data);
}
