import { readdirSync, readFileSync } from 'node:fs';
import { parseAllDocuments } from 'yaml';

/** The repository's root, as a URL to resolve files under. */
export const repoRoot = new URL('../../', import.meta.url);

export const readRepoFile = (relative: string): string => readFileSync(new URL(relative, repoRoot), 'utf8');

/**
 * The environment variables airlock reads, from src/config/app-config.ts's own text: every
 * `env.NAME` loadAppConfig reads and every name in its ENV_NAMES table.
 */
export function variablesAirlockReads(): Set<string> {
  const source = readRepoFile('src/config/app-config.ts');
  const names = new Set<string>();
  for (const [, name] of source.matchAll(/\benv\.([A-Z][A-Z0-9_]*)/g)) names.add(name!);
  const table = /const ENV_NAMES[^=]*=\s*\{([\s\S]*?)\n\};/.exec(source)?.[1];
  if (!table) throw new Error('src/config/app-config.ts no longer has an ENV_NAMES table to read');
  for (const [, name] of table.matchAll(/:\s*'([A-Z][A-Z0-9_]*)'/g)) names.add(name!);
  return names;
}

/** A variable OpenTelemetry's SDKs read (OTEL_EXPORTER_OTLP_ENDPOINT, OTEL_SERVICE_NAME, …). */
export const isOpenTelemetryVariable = (name: string): boolean => /^OTEL_[A-Z0-9_]+$/.test(name);

/** One `Key=value` line of a systemd unit, with its section. */
export interface UnitDirective {
  section: string;
  key: string;
  value: string;
}

export function unitDirectives(text: string): UnitDirective[] {
  const directives: UnitDirective[] = [];
  let section = '';
  for (const line of text.split('\n')) {
    const trimmed = line.trim();
    if (!trimmed || trimmed.startsWith('#') || trimmed.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(trimmed);
    if (header) {
      section = header[1]!;
      continue;
    }
    const eq = trimmed.indexOf('=');
    if (eq < 1) throw new Error(`not a unit file line: ${line}`);
    directives.push({ section, key: trimmed.slice(0, eq), value: trimmed.slice(eq + 1) });
  }
  return directives;
}

/** The variables a unit sets itself (`Environment=NAME=value`). */
export function unitEnvironment(directives: UnitDirective[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const { key, value } of directives) {
    if (key !== 'Environment') continue;
    const eq = value.indexOf('=');
    env[value.slice(0, eq)] = value.slice(eq + 1);
  }
  return env;
}

/** One `NAME=value` line of an EnvironmentFile example: set (`NAME=`) or shown commented (`# NAME=`). */
export interface ExampleVariable {
  name: string;
  value: string;
  active: boolean;
  /** A prose comment opens the block the line is in. */
  described: boolean;
  line: number;
}

export function exampleVariables(text: string): ExampleVariable[] {
  const variables: ExampleVariable[] = [];
  let described = false;
  text.split('\n').forEach((line, index) => {
    const variable = /^(#\s*)?([A-Z][A-Z0-9_]*)=(.*)$/.exec(line);
    if (variable) {
      const [, hash, name, value] = variable;
      variables.push({ name: name!, value: value!, active: !hash, described, line: index + 1 });
    } else if (line.trim() === '') described = false;
    else if (/^#\s*\S/.test(line) && !/^#\s*-{3}/.test(line)) described = true;
  });
  return variables;
}

/** The active settings of an example file, as systemd would read them. */
export function exampleEnvironment(text: string): Record<string, string> {
  return Object.fromEntries(
    exampleVariables(text)
      .filter((v) => v.active)
      .map((v) => [v.name, v.value]),
  );
}

// --- Kubernetes -----------------------------------------------------------------------------------

// biome-ignore lint/suspicious/noExplicitAny: manifests are read as plain YAML and checked field by field.
export type Manifest = Record<string, any>;

export const KUBERNETES_DIR = 'deploy/kubernetes/';

export function kubernetesFiles(): string[] {
  return readdirSync(new URL(KUBERNETES_DIR, repoRoot))
    .filter((f) => f.endsWith('.yaml'))
    .sort();
}

/** Every document of a YAML file; throws on the first syntax error. */
export function yamlDocuments(relative: string): Manifest[] {
  return parseAllDocuments(readRepoFile(relative)).map((doc) => {
    if (doc.errors.length) throw new Error(`${relative}: ${doc.errors.map((e) => e.message).join('; ')}`);
    return doc.toJS() as Manifest;
  });
}

let manifests: Map<string, Manifest[]> | undefined;

/** The manifests the kustomization applies (every file but kustomization.yaml), by file; read once. */
export function kubernetesManifests(): Map<string, Manifest[]> {
  manifests ??= new Map(
    kubernetesFiles()
      .filter((f) => f !== 'kustomization.yaml')
      .map((f) => [f, yamlDocuments(KUBERNETES_DIR + f)]),
  );
  return manifests;
}

export function kustomization(): Manifest {
  const [doc] = yamlDocuments(`${KUBERNETES_DIR}kustomization.yaml`);
  return doc!;
}

export function findManifest(kind: string, name: string): Manifest {
  for (const docs of kubernetesManifests().values())
    for (const doc of docs) if (doc.kind === kind && doc.metadata?.name === name) return doc;
  throw new Error(`no ${kind} ${name} under ${KUBERNETES_DIR}`);
}

/** The containers (init containers included) of a Deployment's or DaemonSet's pods. */
export function podContainers(workload: Manifest): Manifest[] {
  const spec = workload.spec.template.spec;
  return [...(spec.initContainers ?? []), ...spec.containers];
}

/** The literals of each ConfigMap the kustomization generates, by name. */
export function generatedConfigMaps(): Map<string, Record<string, string>> {
  const maps = new Map<string, Record<string, string>>();
  for (const generator of kustomization().configMapGenerator ?? []) {
    const literals: Record<string, string> = {};
    for (const literal of generator.literals ?? []) {
      const text = String(literal);
      const eq = text.indexOf('=');
      literals[text.slice(0, eq)] = text.slice(eq + 1);
    }
    maps.set(generator.name, literals);
  }
  return maps;
}

/** A variable a container gets: a value, or a reference to a Secret key or a pod field. */
export type ContainerVariable =
  | { name: string; value: string }
  | { name: string; secret: { name: string; key: string; optional: boolean } }
  | { name: string; field: string };

/** Every variable a container gets, from `env` and from the generated ConfigMaps it names. */
export function containerVariables(container: Manifest): ContainerVariable[] {
  const maps = generatedConfigMaps();
  const out: ContainerVariable[] = [];
  for (const from of container.envFrom ?? []) {
    if (!from.configMapRef)
      throw new Error(
        `${container.name}: envFrom other than a generated ConfigMap hides which variables it sets`,
      );
    const literals = maps.get(from.configMapRef.name);
    if (!literals) throw new Error(`${container.name}: ConfigMap ${from.configMapRef.name} is not generated`);
    for (const [name, value] of Object.entries(literals)) out.push({ name, value });
  }
  for (const env of container.env ?? []) {
    const ref = env.valueFrom?.secretKeyRef;
    if (ref)
      out.push({ name: env.name, secret: { name: ref.name, key: ref.key, optional: ref.optional === true } });
    else if (env.valueFrom?.fieldRef) out.push({ name: env.name, field: env.valueFrom.fieldRef.fieldPath });
    else out.push({ name: env.name, value: String(env.value ?? '') });
  }
  return out;
}

/** The Secrets a workload's pods read, through variables or volumes. */
export function secretsUsed(workload: Manifest): Set<string> {
  const names = new Set<string>();
  for (const container of podContainers(workload))
    for (const v of containerVariables(container)) if ('secret' in v) names.add(v.secret.name);
  for (const volume of workload.spec.template.spec.volumes ?? [])
    if (volume.secret) names.add(volume.secret.secretName);
  return names;
}
