import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../errors.ts';

/** One Debian archive as apt knows it: where it is, and which suites and components to use. */
export interface DebianSource {
  uri: string;
  suites: string[];
  components: string[];
  /** apt's `trusted=yes` (`Trusted: yes`): an unsigned archive the operator vouches for. */
  trusted: boolean;
}

/**
 * Reads apt sources in either format: one-line (`deb [opts] URI SUITE COMPONENT…`) and deb822
 * (`Types:`, `URIs:`, `Suites:`, `Components:`, `Trusted:` stanzas). Only binary (`deb`) entries
 * over http or https are kept. `source` names the text in errors.
 */
export function parseDebianSources(text: string, source: string): DebianSource[] {
  const found: DebianSource[] = [];
  const isDeb822 = /^\s*(Types|URIs)\s*:/im.test(text);
  if (isDeb822) {
    for (const stanza of text.split(/\n\s*\n/)) {
      const fields = new Map<string, string>();
      let last: string | undefined;
      for (const line of stanza.split('\n')) {
        if (/^\s*#/.test(line) || line.trim() === '') continue;
        if (/^\s/.test(line) && last) {
          fields.set(last, `${fields.get(last)} ${line.trim()}`);
          continue;
        }
        const match = /^([A-Za-z-]+)\s*:\s*(.*)$/.exec(line);
        if (!match) throw new ConfigError(`${source}: cannot read the line ${JSON.stringify(line)}`);
        last = match[1]!.toLowerCase();
        fields.set(last, match[2]!.trim());
      }
      if (!fields.size || fields.get('enabled')?.toLowerCase() === 'no') continue;
      if (!(fields.get('types') ?? '').split(/\s+/).includes('deb')) continue;
      const words = (name: string) => (fields.get(name) ?? '').split(/\s+/).filter(Boolean);
      for (const uri of words('uris')) {
        found.push({
          uri,
          suites: words('suites'),
          components: words('components'),
          trusted: fields.get('trusted')?.toLowerCase() === 'yes',
        });
      }
    }
  } else {
    for (const raw of text.split('\n')) {
      const line = raw.replace(/#.*$/, '').trim();
      if (!line) continue;
      const match = /^(deb|deb-src)\s+(?:\[([^\]]*)\]\s+)?(\S+)\s+(\S+)\s*(.*)$/.exec(line);
      if (!match) throw new ConfigError(`${source}: cannot read the line ${JSON.stringify(raw)}`);
      if (match[1] !== 'deb') continue;
      const options = (match[2] ?? '').split(/\s+/);
      found.push({
        uri: match[3]!,
        suites: [match[4]!],
        components: match[5]!.split(/\s+/).filter(Boolean),
        trusted: options.includes('trusted=yes'),
      });
    }
  }
  return found.filter((s) => /^https?:\/\//i.test(s.uri) && s.suites.length > 0);
}

/**
 * The archives for a guest of Debian `release` (e.g. bookworm): the operator's sources file when
 * given (AIRLOCK_DEBIAN_SOURCES), else this host's own apt sources (/etc/apt/sources.list and
 * sources.list.d). Only the suites of that release are kept (bookworm, bookworm-updates,
 * bookworm-security, …), so other vendors' repositories the host may list stay out.
 */
export function debianSourcesFor(release: string, file?: string): DebianSource[] {
  const texts: Array<[string, string]> = [];
  const read = (name: string) => {
    try {
      texts.push([name, readFileSync(name, 'utf8')]);
    } catch (cause) {
      throw new ConfigError(`the apt sources file ${name} cannot be read`, [], {
        cause,
        hint: file ? 'point AIRLOCK_DEBIAN_SOURCES at a readable apt sources file' : undefined,
      });
    }
  };
  if (file) read(file);
  else {
    const main = '/etc/apt/sources.list';
    const dir = '/etc/apt/sources.list.d';
    if (exists(main)) read(main);
    for (const name of listDir(dir)) {
      if (name.endsWith('.list') || name.endsWith('.sources')) read(path.join(dir, name));
    }
  }
  const sources: DebianSource[] = [];
  for (const [name, text] of texts) {
    for (const entry of parseDebianSources(text, name)) {
      const suites = entry.suites.filter((s) => s === release || s.startsWith(`${release}-`));
      if (suites.length) sources.push({ ...entry, suites });
    }
  }
  if (!sources.length) {
    throw new ConfigError(
      `no Debian archive for ${release} is configured ${file ? `in ${file}` : 'on this host (/etc/apt/sources.list, sources.list.d)'}`,
      [],
      { hint: `set AIRLOCK_DEBIAN_SOURCES to an apt sources file listing a ${release} archive` },
    );
  }
  return sources;
}

function exists(file: string): boolean {
  try {
    readFileSync(file);
    return true;
  } catch {
    return false;
  }
}

function listDir(dir: string): string[] {
  try {
    return readdirSync(dir).sort();
  } catch {
    return [];
  }
}
