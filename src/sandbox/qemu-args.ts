import type { VmImage } from './vm-image.ts';

/** Everything the QEMU command line depends on for one VM. */
export interface QemuLaunch {
  image: VmImage;
  accel: 'kvm' | 'tcg';
  cpus: number;
  memoryMib: number;
  overlay: string;
  scratch: string;
  controlSocket: string;
  /** QMP monitor socket on the host (memory dumps for forensics, never reachable from the guest). */
  qmpSocket: string;
  consoleLog: string;
  proxySocket?: string | undefined;
  /** Host TSC frequency, so a TCG guest skips calibration (it hangs there one boot in four). */
  tscKhz?: number | undefined;
  /** Initrd override (the bare boot of the benchmark and the accelerator probe). */
  initrd?: string;
  /**
   * Guest RAM in a file instead of anonymous memory: shared with the file for a VM that may be
   * frozen into a snapshot (its RAM is then already saved), private copy-on-write over a frozen
   * snapshot's file for a VM restored from it.
   */
  memoryFile?: { path: string; mode: 'shared' | 'private' } | undefined;
  /** Start paused, waiting for its device state over QMP (`migrate-incoming`). */
  incoming?: boolean;
}

/** The guest address of the task's proxy; forwarded to the task's proxy socket on the host. */
export const GUEST_PROXY_ADDRESS = '10.0.2.100';

/**
 * The QEMU microvm command line: direct kernel boot, no firmware, no default devices; the golden
 * root image read-only under a per-task copy-on-write overlay; a scratch disk; user networking with
 * `restrict=on` whose only way out is the guestfwd rule to this task's proxy socket; a virtio
 * console for the kernel log and a virtio serial port for the control channel. Nothing on the
 * command line is secret.
 */
export function qemuArgs(launch: QemuLaunch): string[] {
  const kernelArgs = [
    'console=ttyS0',
    'quiet',
    'panic=-1',
    'audit=1',
    'audit_backlog_limit=8192',
    // Exec records reach the host through the kernel log: a big buffer keeps a busy guest from
    // overwriting them before the guest agent reads them.
    'log_buf_len=16M',
    'random.trust_cpu=on',
    `airlock.epoch=${Math.floor(Date.now() / 1000)}`,
    ...(launch.accel === 'tcg' && launch.tscKhz ? [`tsc_early_khz=${launch.tscKhz}`, 'tsc=reliable'] : []),
  ];
  const netdev = ['user', 'id=net0', 'restrict=on', 'ipv6=off'];
  if (launch.proxySocket) {
    netdev.push(`guestfwd=tcp:${GUEST_PROXY_ADDRESS}:80-cmd:socat - UNIX-CONNECT:${launch.proxySocket}`);
  }
  const memory = launch.memoryFile
    ? [
        '-object',
        [
          'memory-backend-file',
          'id=mem',
          `size=${launch.memoryMib}M`,
          `mem-path=${launch.memoryFile.path}`,
          // Private: copy-on-write over the frozen file, never written back. (QEMU 7.2's readonly=on
          // would make guest RAM itself read-only.)
          launch.memoryFile.mode === 'shared' ? 'share=on' : 'share=off',
        ].join(','),
      ]
    : [];
  return [
    ...memory,
    '-M',
    `microvm,x-option-roms=off,rtc=off${launch.memoryFile ? ',memory-backend=mem' : ''}`,
    '-nodefaults',
    '-no-user-config',
    '-nographic',
    '-no-reboot',
    '-accel',
    launch.accel === 'kvm' ? 'kvm' : 'tcg,thread=multi',
    '-cpu',
    launch.accel === 'kvm' ? 'host' : 'max',
    '-smp',
    String(launch.cpus),
    '-m',
    `${launch.memoryMib}M`,
    '-kernel',
    launch.image.kernel,
    '-initrd',
    launch.initrd ?? launch.image.initrd,
    '-append',
    kernelArgs.join(' '),
    '-drive',
    `id=root,file=${launch.overlay},format=qcow2,if=none,discard=unmap`,
    '-device',
    'virtio-blk-device,drive=root',
    '-drive',
    `id=scratch,file=${launch.scratch},format=qcow2,if=none,discard=unmap`,
    '-device',
    'virtio-blk-device,drive=scratch',
    '-netdev',
    netdev.join(','),
    '-device',
    'virtio-net-device,netdev=net0',
    '-device',
    'virtio-serial-device',
    '-serial',
    `file:${launch.consoleLog}`,
    '-chardev',
    `socket,id=ctl,path=${launch.controlSocket},server=on,wait=off`,
    '-device',
    'virtserialport,chardev=ctl,name=airlock.ctl',
    '-qmp',
    `unix:${launch.qmpSocket},server=on,wait=off`,
    ...(launch.incoming ? ['-incoming', 'defer', '-S'] : []),
    '-sandbox',
    // elevateprivileges=deny would also bind the guestfwd helpers (socat) and break the proxy route.
    'on,obsolete=deny,resourcecontrol=deny',
  ];
}
