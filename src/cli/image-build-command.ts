import { parseArgs } from 'node:util';
import { loadAppConfig } from '../config/app-config.ts';
import { createLogger } from '../logger.ts';
import { ensureVmImage } from '../sandbox/image-builder.ts';
import { SecretRedactor } from '../secrets.ts';

/** `airlock image build [--force]`: builds (or reuses) the microVM image and prints where it is. */
export default async function imageBuild(args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { force: { type: 'boolean', default: false } } });
  const config = loadAppConfig(process.env);
  const log = createLogger({ redactor: new SecretRedactor(), level: 'info', format: config.logFormat });
  const started = performance.now();
  const image = await ensureVmImage({ cacheDir: config.cacheDir, log, force: values.force });
  const manifest = image.manifest as {
    buildSeconds?: number;
    rootfsUsedMiB?: number;
    rootfsSizeMiB?: number;
  };
  process.stdout.write(
    `${image.dir}\n  digest ${image.digest}\n  root file system ${manifest.rootfsUsedMiB} MiB used of ${manifest.rootfsSizeMiB} MiB\n  built in ${manifest.buildSeconds}s (this run: ${Math.round((performance.now() - started) / 1000)}s)\n`,
  );
  return 0;
}
