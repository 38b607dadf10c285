import { MicroVm } from '../../src/sandbox/micro-vm.ts';
import type { Sandbox, Vm } from '../../src/sandbox/sandbox.ts';

/** Where an agent can leave files: its home, the workspace, and the guest's temporary directory. */
const AGENT_WRITABLE = ['/home/agent', '/work', '/tmp'];

/**
 * The real sandbox, whose VMs have the methods `override` gives for them in place of their own
 * (the test plays a part of the guest, or looks at it at a chosen moment).
 */
export function overrideVms(
  real: Sandbox,
  override: (vm: MicroVm) => Partial<Pick<Vm, 'exec' | 'destroy'>>,
): Sandbox {
  return {
    get accel() {
      return real.accel;
    },
    get imageDigest() {
      return real.imageDigest;
    },
    get agentPackages() {
      return real.agentPackages;
    },
    get debianRelease() {
      return real.debianRelease;
    },
    reapOrphans: () => real.reapOrphans(),
    freeze: (vm, dir) => real.freeze(vm, dir),
    openSnapshot: (dir) => real.openSnapshot(dir),
    drainWarmPool: (snapshot) => real.drainWarmPool(snapshot),
    close: () => real.close(),
    async create(spec, signal) {
      const vm = await real.create(spec, signal);
      if (!(vm instanceof MicroVm)) throw new Error('expected a microVM');
      const overrides: Partial<Vm> = override(vm);
      return new Proxy(vm, {
        get(target, property) {
          const own = overrides[property as keyof Vm];
          if (own !== undefined) return own;
          const value = Reflect.get(target, property, target);
          return typeof value === 'function' ? value.bind(target) : value;
        },
      }) as Vm;
    },
  };
}

/**
 * The real sandbox, with `inspect` run on each of its VMs just before the VM is destroyed (the
 * VM is still running, so the test can read its disks, memory or files).
 */
export function inspectBeforeDestroy(real: Sandbox, inspect: (vm: MicroVm) => Promise<void>): Sandbox {
  return overrideVms(real, (vm) => ({
    async destroy() {
      await inspect(vm);
      return vm.destroy();
    },
  }));
}

/**
 * The real sandbox, whose VMs are read out just before they are destroyed: the contents of every
 * file the agent could have written, concatenated, for the test to search on the host (so a secret
 * it looks for is never sent into the VM).
 */
export function agentFilesSandbox(real: Sandbox, onScan: (contents: string) => void): Sandbox {
  return inspectBeforeDestroy(real, async (vm) => {
    let out = '';
    const read = await vm.exec(
      {
        argv: [
          '/bin/sh',
          '-c',
          `find ${AGENT_WRITABLE.join(' ')} -xdev -type f -size -8M -exec cat {} + 2>/dev/null; true`,
        ],
      },
      (_stream, data) => {
        out += data;
      },
    );
    onScan(read.code === 0 ? out : `scan failed with exit ${read.code}`);
  });
}
