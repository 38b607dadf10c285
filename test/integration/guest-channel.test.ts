import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GuestChannel } from '../../src/sandbox/guest-channel.ts';

// The host end of the control channel against a scripted guest end on a unix socket.
let dir: string;
let server: Server;
let guest: Socket;
let channel: GuestChannel;

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-channel-'));
  const socketPath = path.join(dir, 'ctl.sock');
  const accepted = new Promise<Socket>((resolve) => {
    server = createServer(resolve).listen(socketPath);
  });
  await new Promise((resolve) => server.once('listening', resolve));
  const host = connect(socketPath);
  guest = await accepted;
  channel = new GuestChannel(host, 1024 * 1024);
});

afterEach(async () => {
  channel.close(new Error('test over'));
  guest.destroy();
  server.close();
  await rm(dir, { recursive: true, force: true });
});

const sendFromGuest = (message: unknown) => guest.write(`${JSON.stringify(message)}\n`);
const ready = (setup: unknown) => ({ type: 'ready', bootMs: 2000, kernel: '6.1.0', guestVersion: 2, setup });

describe("the host end of a VM's control channel", () => {
  it('resolves ready with the parsed report', async () => {
    sendFromGuest(ready({ scratch: 0, network: 0, audit: 0, auditLocked: true }));
    expect(await channel.ready).toEqual(ready({ scratch: 0, network: 0, audit: 0, auditLocked: true }));
  });

  it('refuses a ready report that does not parse, instead of waiting for the boot timeout', async () => {
    sendFromGuest(ready({ scratch: 0, network: 0, audit: 0 }));
    await expect(channel.ready).rejects.toMatchObject({
      code: 'vm_boot_failed',
      message: expect.stringMatching(/ready report did not parse \(setup/),
    });
  });

  it("returns what the guest killed of a user's processes", async () => {
    guest.on('data', (chunk) => {
      const request = JSON.parse(String(chunk).trim());
      expect(request).toMatchObject({ type: 'kill_user_processes', uid: 1000 });
      sendFromGuest({
        type: 'killed',
        id: request.id,
        processes: [{ pid: 77, argv: ['sleep', '600'] }],
        survivors: [],
      });
    });
    expect(await channel.killUserProcesses(1000)).toEqual({
      processes: [{ pid: 77, argv: ['sleep', '600'] }],
      survivors: [],
    });
  });
});
