import { execFileSync, spawnSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { loadAppConfig } from '../../src/config/app-config.ts';
import { NODE_FLAGS } from '../../src/process/node-flags.ts';
import {
  containerVariables,
  exampleEnvironment,
  exampleVariables,
  findManifest,
  isOpenTelemetryVariable,
  KUBERNETES_DIR,
  kubernetesFiles,
  kubernetesManifests,
  kustomization,
  type Manifest,
  podContainers,
  readRepoFile,
  repoRoot,
  secretsUsed,
  unitDirectives,
  unitEnvironment,
  variablesAirlockReads,
} from '../helpers/deploy-manifests.ts';

// deploy/ as the security model states it (docs/deploy.md): only the control plane holds the
// GitHub App; only workers hold the model keys; the internal API stays inside the cluster; every
// variable the files set is one airlock reads; and the files load into a valid configuration of
// their role.

const SYSTEMD = 'deploy/systemd/';
const WORKER_FILES = [
  `${SYSTEMD}airlock-worker.service`,
  `${SYSTEMD}worker.env.example`,
  `${KUBERNETES_DIR}worker-daemonset.yaml`,
];
const CONTROL_FILES = [
  `${SYSTEMD}airlock-control.service`,
  `${SYSTEMD}control.env.example`,
  `${KUBERNETES_DIR}control-plane.yaml`,
];
/** What the GitHub App's secret holds; only control-plane pods may read it. */
const APP_SECRET = 'airlock-github-app';
/** Test values for the settings the examples leave empty because the operator must choose them. */
const OPERATOR_VALUES: Record<string, string> = {
  AIRLOCK_PUBLIC_URL: 'https://airlock.example.com',
  DATABASE_URL: 'postgres://airlock:password@db.internal:5432/airlock',
  AIRLOCK_WORKER_SECRET: 'f'.repeat(64),
  AIRLOCK_CONTROL_URL: 'http://10.0.0.10:3001',
  APP_ID: '123456',
  WEBHOOK_SECRET: 'a-webhook-secret',
};

const scratch = mkdtempSync(path.join(tmpdir(), 'airlock-deploy-files-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));
/** A GitHub App key as the control plane would find it at PRIVATE_KEY_PATH. */
const appKeyFile = (dir: string, name: string) => {
  const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const file = path.join(dir, name);
  writeFileSync(file, privateKey.export({ type: 'pkcs1', format: 'pem' }));
  return file;
};

/** An example's environment with the operator's required values filled in. */
const filledIn = (env: Record<string, string>) =>
  Object.fromEntries(
    Object.entries(env).map(([name, value]) => {
      if (value !== '') return [name, value];
      const chosen = OPERATOR_VALUES[name];
      if (chosen === undefined) throw new Error(`no test value for ${name}, which the example leaves empty`);
      return [name, chosen];
    }),
  );

const units = {
  control: unitDirectives(readRepoFile(`${SYSTEMD}airlock-control.service`)),
  worker: unitDirectives(readRepoFile(`${SYSTEMD}airlock-worker.service`)),
};
const directive = (role: keyof typeof units, key: string) =>
  units[role].filter((d) => d.key === key).map((d) => d.value);

describe('the GitHub App key reaches control planes only', () => {
  it.each(WORKER_FILES)('%s never names it', (file) => {
    const text = readRepoFile(file);
    expect(text).not.toMatch(/PRIVATE_KEY/);
    expect(text).not.toContain(APP_SECRET);
  });

  it.each(CONTROL_FILES)('%s names it', (file) => {
    const text = readRepoFile(file);
    expect(text).toMatch(/PRIVATE_KEY_PATH/);
    if (file.endsWith('.yaml')) expect(text).toContain(APP_SECRET);
  });

  it('the worker unit loads no credential and names no App setting', () => {
    expect(directive('worker', 'LoadCredential')).toEqual([]);
    expect(directive('worker', 'SetCredential')).toEqual([]);
    const appSettings = ['APP_ID', 'WEBHOOK_SECRET', 'GITHUB_CLIENT_SECRET', 'AIRLOCK_SESSION_SECRET'];
    const env = {
      ...unitEnvironment(units.worker),
      ...exampleEnvironment(readRepoFile(`${SYSTEMD}worker.env.example`)),
    };
    for (const name of appSettings) expect(env).not.toHaveProperty(name);
  });

  it('the control unit hands the key over as a credential, and PRIVATE_KEY_PATH points at it', () => {
    const [credential] = directive('control', 'LoadCredential');
    expect(credential).toMatch(/^github-app\.pem:\/etc\/airlock\/github-app\.pem$/);
    expect(unitEnvironment(units.control).PRIVATE_KEY_PATH).toBe('%d/github-app.pem');
    // The key never travels as a variable.
    expect(exampleEnvironment(readRepoFile(`${SYSTEMD}control.env.example`))).not.toHaveProperty(
      'PRIVATE_KEY',
    );
  });

  it('only the control-plane Deployment reads the App secret, as a file at PRIVATE_KEY_PATH', () => {
    const control = findManifest('Deployment', 'airlock-control');
    const worker = findManifest('DaemonSet', 'airlock-worker');
    expect(secretsUsed(worker)).not.toContain(APP_SECRET);
    for (const docs of kubernetesManifests().values())
      for (const doc of docs)
        if (doc.spec?.template && doc.metadata.name !== control.metadata.name)
          expect(secretsUsed(doc)).not.toContain(APP_SECRET);

    const volume = control.spec.template.spec.volumes.find(
      (v: Manifest) => v.secret?.secretName === APP_SECRET,
    );
    const [container] = control.spec.template.spec.containers;
    const mount = container.volumeMounts.find((m: Manifest) => m.name === volume.name);
    const keyPath = containerVariables(container).find((v) => v.name === 'PRIVATE_KEY_PATH');
    const item = volume.secret.items.find((i: Manifest) => i.key === 'private-key.pem');
    expect(keyPath).toEqual({ name: 'PRIVATE_KEY_PATH', value: `${mount.mountPath}/${item.path}` });
    expect(mount.readOnly).toBe(true);
  });

  it('the model keys reach workers only; the database and the workers secret reach both', () => {
    const control = secretsUsed(findManifest('Deployment', 'airlock-control'));
    const worker = secretsUsed(findManifest('DaemonSet', 'airlock-worker'));
    expect([...control].sort()).toEqual(['airlock-database', APP_SECRET, 'airlock-worker-secret']);
    expect([...worker].sort()).toEqual(['airlock-database', 'airlock-model-keys', 'airlock-worker-secret']);
  });
});

describe('the internal API stays inside', () => {
  const internalPort = (container: Manifest) =>
    container.ports.find((p: Manifest) => p.name === 'internal').containerPort as number;

  it('its Service is ClusterIP, and no Service or Ingress publishes it', () => {
    const service = findManifest('Service', 'airlock-internal');
    expect(service.spec.type).toBe('ClusterIP');
    expect(service.spec.ports.map((p: Manifest) => p.targetPort)).toEqual(['internal']);
    for (const docs of kubernetesManifests().values())
      for (const doc of docs) {
        expect(doc.kind).not.toBe('Ingress');
        if (doc.kind !== 'Service') continue;
        const publishes = ['LoadBalancer', 'NodePort'].includes(doc.spec.type) || doc.spec.externalIPs;
        if (publishes) expect(doc.spec.ports.map((p: Manifest) => p.targetPort)).not.toContain('internal');
      }
  });

  it('only worker pods may connect to it', () => {
    const policy = findManifest('NetworkPolicy', 'airlock-internal');
    const control = findManifest('Deployment', 'airlock-control');
    const worker = findManifest('DaemonSet', 'airlock-worker');
    expect(policy.spec.podSelector.matchLabels).toEqual(control.spec.template.metadata.labels);
    for (const rule of policy.spec.ingress) {
      if (!rule.ports.some((p: Manifest) => p.port === 'internal')) continue;
      expect(rule.from).toEqual([{ podSelector: { matchLabels: worker.spec.template.metadata.labels } }]);
    }
    const open = policy.spec.ingress.filter((r: Manifest) => !r.from);
    expect(open.flatMap((r: Manifest) => r.ports.map((p: Manifest) => p.port))).toEqual(['web']);
  });

  it('control planes serve it where the Service sends workers, and workers call that Service', () => {
    const control = findManifest('Deployment', 'airlock-control').spec.template.spec.containers[0];
    const service = findManifest('Service', 'airlock-internal');
    const controlEnv = containerVariables(control);
    expect(controlEnv).toContainEqual({
      name: 'AIRLOCK_INTERNAL_PORT',
      value: String(internalPort(control)),
    });
    expect(controlEnv).toContainEqual({ name: 'AIRLOCK_INTERNAL_HOST', value: '0.0.0.0' });
    const [worker] = findManifest('DaemonSet', 'airlock-worker').spec.template.spec.containers;
    expect(containerVariables(worker)).toContainEqual({
      name: 'AIRLOCK_CONTROL_URL',
      value: `http://${service.metadata.name}:${service.spec.ports[0].port}`,
    });
  });
});

describe('every variable the files set is one airlock reads', () => {
  const known = variablesAirlockReads();
  const unknown = (names: string[]) => names.filter((n) => !known.has(n) && !isOpenTelemetryVariable(n));

  it('reads the names from src/config/app-config.ts', () => {
    // A parse that found nothing would let every name through.
    for (const name of ['AIRLOCK_ROLE', 'DATABASE_URL', 'AIRLOCK_WORKER_SECRET', 'PRIVATE_KEY_PATH', 'HOST'])
      expect(known).toContain(name);
  });

  it.each(['control.env.example', 'worker.env.example'])('%s: each one known and described', (file) => {
    const variables = exampleVariables(readRepoFile(SYSTEMD + file));
    expect(variables.length).toBeGreaterThan(10);
    expect(unknown(variables.map((v) => v.name))).toEqual([]);
    expect(variables.filter((v) => !v.described).map((v) => `line ${v.line}: ${v.name}`)).toEqual([]);
  });

  it.each(['control', 'worker'] as const)('airlock-%s.service', (role) => {
    expect(unknown(Object.keys(unitEnvironment(units[role])))).toEqual([]);
  });

  it('the Kubernetes manifests and generated ConfigMaps', () => {
    const names = [...kubernetesManifests().values()]
      .flat()
      .filter((doc) => doc.spec?.template)
      .flatMap(podContainers)
      .flatMap((c) => containerVariables(c).map((v) => v.name));
    expect(names.length).toBeGreaterThan(10);
    expect(unknown(names)).toEqual([]);
  });
});

describe('each role’s files make a valid configuration of that role', () => {
  it.each(['control', 'worker'] as const)('systemd: airlock-%s.service with its example settings', (role) => {
    const credentials = mkdtempSync(path.join(scratch, 'credentials-'));
    if (role === 'control') appKeyFile(credentials, 'github-app.pem');
    const unitEnv = Object.fromEntries(
      Object.entries(unitEnvironment(units[role])).map(([k, v]) => [k, v.replace('%d', credentials)]),
    );
    // systemd: what the EnvironmentFile sets wins over the unit's Environment=.
    const example = filledIn(exampleEnvironment(readRepoFile(`${SYSTEMD}${role}.env.example`)));
    const config = loadAppConfig({ ...unitEnv, ...example });
    expect(config.role).toBe(role);
    expect(config.github !== undefined).toBe(role === 'control');
    expect(directive(role, 'EnvironmentFile')).toEqual([`/etc/airlock/${role}.env`]);
  });

  it.each([
    ['Deployment', 'airlock-control', 'control'],
    ['DaemonSet', 'airlock-worker', 'worker'],
  ] as const)('Kubernetes: the %s %s', (kind, name, role) => {
    const [container] = findManifest(kind, name).spec.template.spec.containers;
    const env: Record<string, string> = {};
    for (const v of containerVariables(container)) {
      if ('value' in v) env[v.name] = v.value;
      else if ('field' in v) env[v.name] = 'node-1';
      else if (!v.secret.optional)
        env[v.name] = OPERATOR_VALUES[v.name] ?? `secret ${v.secret.name}/${v.secret.key}`;
    }
    if (env.PRIVATE_KEY_PATH) env.PRIVATE_KEY_PATH = appKeyFile(scratch, `${name}.pem`);
    const config = loadAppConfig(filledIn(env));
    expect(config.role).toBe(role);
    expect(config.github !== undefined).toBe(role === 'control');
  });
});

describe('Kubernetes manifests', () => {
  it('parse, and the kustomization applies every one of them', () => {
    const listed: string[] = kustomization().resources;
    expect([...listed].sort()).toEqual(kubernetesFiles().filter((f) => f !== 'kustomization.yaml'));
    for (const docs of kubernetesManifests().values()) for (const doc of docs) expect(doc.kind).toBeTruthy();
  });

  it('run two control planes, ready when /healthz answers', () => {
    const control = findManifest('Deployment', 'airlock-control');
    expect(control.spec.replicas).toBe(2);
    const [container] = control.spec.template.spec.containers;
    expect(container.readinessProbe.httpGet).toEqual({ path: '/healthz', port: 'web' });
    expect(container.securityContext).toMatchObject({
      allowPrivilegeEscalation: false,
      readOnlyRootFilesystem: true,
    });
    expect(control.spec.template.spec.securityContext.runAsNonRoot).toBe(true);
  });

  it.each([
    ['Deployment', 'airlock-control'],
    ['DaemonSet', 'airlock-worker'],
  ])('the %s %s gets no Service variables', (kind, name) => {
    // Service airlock-internal would set AIRLOCK_INTERNAL_PORT=tcp://… in every pod, over
    // airlock's own setting (a worker would then refuse it as not a port).
    expect(findManifest(kind, name).spec.template.spec.enableServiceLinks).toBe(false);
  });

  it('run workers on labelled nodes only, with /dev/kvm from the node', () => {
    const spec = findManifest('DaemonSet', 'airlock-worker').spec.template.spec;
    expect(Object.keys(spec.nodeSelector)).toEqual(['airlock/kvm']);
    const kvm = spec.volumes.find((v: Manifest) => v.hostPath?.path === '/dev/kvm');
    expect(kvm.hostPath.type).toBe('CharDevice');
    expect(spec.containers[0].volumeMounts).toContainEqual({ name: kvm.name, mountPath: '/dev/kvm' });
  });

  it('kubectl kustomize renders them', (ctx) => {
    const kubectl = spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' });
    ctx.skip(kubectl.status !== 0, 'kubectl is not installed here, so the kustomization is not rendered');
    const rendered = execFileSync(
      'kubectl',
      ['kustomize', fileURLToPath(new URL(KUBERNETES_DIR, repoRoot))],
      {
        encoding: 'utf8',
      },
    );
    const kinds = parseAllDocuments(rendered).map((d) => (d.toJS() as Manifest).kind);
    expect(kinds.sort()).toEqual([
      'ConfigMap',
      'ConfigMap',
      'ConfigMap',
      'DaemonSet',
      'Deployment',
      'NetworkPolicy',
      'PodDisruptionBudget',
      'Service',
      'Service',
    ]);
  });
});

describe('systemd units', () => {
  const checkout = fileURLToPath(repoRoot).replace(/\/$/, '');
  /** The unit as installed from this checkout rather than /opt/airlock, so its programs exist. */
  const installed = (role: keyof typeof units) => {
    const file = path.join(scratch, `airlock-${role}.service`);
    writeFileSync(
      file,
      readRepoFile(`${SYSTEMD}airlock-${role}.service`).replaceAll('/opt/airlock/', `${checkout}/`),
    );
    return file;
  };
  const systemdAnalyze = spawnSync('systemd-analyze', ['--version'], { encoding: 'utf8' }).status === 0;
  const noSystemdAnalyze = 'systemd-analyze is not installed here, so the units are not verified by systemd';

  it.each(['control', 'worker'] as const)('airlock-%s.service starts what npm start runs', (role) => {
    const [execStart] = directive(role, 'ExecStart');
    const argv = execStart!.split(/\s+/);
    expect(argv[0]).toBe('/opt/airlock/node_modules/.bin/node');
    expect(argv.slice(1, -1)).toEqual([...NODE_FLAGS]);
    expect(argv.at(-1)).toBe('/opt/airlock/src/main.ts');
    expect(existsSync(new URL('src/main.ts', repoRoot))).toBe(true);
    expect(directive(role, 'Restart')).toEqual(['always']);
    expect(unitEnvironment(units[role]).AIRLOCK_ROLE).toBe(role);
  });

  it('the worker may open /dev/kvm and no other device', () => {
    expect(directive('worker', 'DevicePolicy')).toEqual(['closed']);
    expect(directive('worker', 'DeviceAllow')).toEqual(['/dev/kvm rw']);
    expect(directive('worker', 'PrivateDevices')).toEqual([]);
    expect(directive('control', 'PrivateDevices')).toEqual(['yes']);
  });

  it.for(['control', 'worker'] as const)('systemd-analyze verify accepts airlock-%s.service', (role, ctx) => {
    ctx.skip(!systemdAnalyze, noSystemdAnalyze);
    const result = spawnSync('systemd-analyze', ['verify', installed(role)], { encoding: 'utf8' });
    expect(result.stderr + result.stdout).toBe('');
    expect(result.status).toBe(0);
  });

  it.for([
    // systemd 252 rates them 1.5 and 1.7 ("OK"); exposure is rated 0-10, the threshold 0-100.
    ['control', 20],
    ['worker', 20],
  ] as const)(
    'systemd-analyze security rates airlock-%s.service at most %i/100 exposed',
    ([role, threshold], ctx) => {
      ctx.skip(!systemdAnalyze, noSystemdAnalyze);
      const result = spawnSync(
        'systemd-analyze',
        ['security', '--offline=yes', `--threshold=${threshold}`, installed(role)],
        { encoding: 'utf8' },
      );
      expect(
        result.status,
        result.stdout
          .split('\n')
          .filter((l) => l.startsWith('✗'))
          .join('\n'),
      ).toBe(0);
    },
  );
});
