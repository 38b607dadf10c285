import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { z } from 'zod';
import { SandboxError } from '../errors.ts';

/** The parts of the image manifest the host relies on (written by vm-images/build.sh). */
export const ImageManifest = z
  .object({
    recipeHash: z.string(),
    /** The Debian release the root file system was made from. */
    debian: z.object({ suite: z.string() }).passthrough().optional(),
    files: z.record(z.string(), z.object({ sha256: z.string(), bytes: z.number() }).passthrough()),
  })
  .passthrough();
export type ImageManifest = z.infer<typeof ImageManifest>;

/** A built VM image on disk. */
export interface VmImage {
  dir: string;
  kernel: string;
  initrd: string;
  rootfs: string;
  /** Initramfs whose init only powers off: the benchmark's and the accelerator probe's bare boot. */
  bareInitrd: string;
  manifest: ImageManifest;
  /** sha256 of manifest.json, recorded in every task's audit record. */
  digest: string;
}

/** Loads a built image from `dir`, checking every part is present. */
export function loadVmImage(dir: string): VmImage {
  const manifestPath = path.join(dir, 'manifest.json');
  if (!existsSync(manifestPath)) {
    throw new SandboxError('image_missing', `no VM image at ${dir}`, {
      hint: 'build it with `npm run airlock -- image build` (needs root for apt and mmdebstrap)',
    });
  }
  const text = readFileSync(manifestPath, 'utf8');
  const manifest = ImageManifest.parse(JSON.parse(text));
  const image: VmImage = {
    dir,
    kernel: path.join(dir, 'vmlinuz'),
    initrd: path.join(dir, 'initrd.img'),
    rootfs: path.join(dir, 'rootfs.ext4'),
    bareInitrd: path.join(dir, 'bare-initrd.img'),
    manifest,
    digest: createHash('sha256').update(text).digest('hex'),
  };
  for (const file of [image.kernel, image.initrd, image.rootfs]) {
    if (!existsSync(file))
      throw new SandboxError('image_incomplete', `VM image part ${file} is missing; rebuild the image`);
  }
  return image;
}
