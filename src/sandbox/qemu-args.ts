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
  return [
    '-M',
    'microvm,x-option-roms=off,rtc=off',
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
    '-sandbox',
    // elevateprivileges=deny would also bind the guestfwd helpers (socat) and break the proxy route.
    'on,obsolete=deny,resourcecontrol=deny',
  ];
}
