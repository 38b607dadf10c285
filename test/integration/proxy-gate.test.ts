import { mkdtemp, rm } from 'node:fs/promises';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { openProxyGate, type ProxyGate } from '../../src/sandbox/proxy-gate.ts';

let dir: string;
let upstream: Server;
let gate: ProxyGate | undefined;
const held: Socket[] = [];

beforeEach(async () => {
  dir = await mkdtemp(path.join(tmpdir(), 'airlock-gate-'));
  // Stands in for the task proxy: echoes what it got once the client has finished sending, and
  // holds every connection until then.
  upstream = createServer({ allowHalfOpen: true }, (socket) => {
    held.push(socket);
    const chunks: Buffer[] = [];
    socket.on('data', (d) => chunks.push(d));
    socket.on('end', () => socket.end(Buffer.concat([Buffer.from('echo:'), ...chunks])));
  });
  await new Promise<void>((resolve) => upstream.listen(path.join(dir, 'proxy.sock'), resolve));
});

afterEach(async () => {
  await gate?.close();
  for (const s of held.splice(0)) s.destroy();
  await new Promise((resolve) => upstream.close(resolve));
  await rm(dir, { recursive: true, force: true });
});

/** A client connection; `gone` once the other side has closed it. */
const open = (socketPath: string) =>
  new Promise<{ socket: Socket; isGone(): boolean; gone: Promise<void> }>((resolve, reject) => {
    const socket = connect({ path: socketPath, allowHalfOpen: true });
    let gone = false;
    const whenGone = new Promise<void>((r) => {
      const done = () => {
        gone = true;
        r();
      };
      socket.once('end', done);
      socket.once('close', done);
    });
    socket.once('connect', () => resolve({ socket, isGone: () => gone, gone: whenGone }));
    socket.once('error', reject);
  });

describe('the proxy gate', () => {
  it('relays a request and its half-close byte for byte', async () => {
    gate = await openProxyGate({
      socketPath: path.join(dir, 'gate.sock'),
      target: path.join(dir, 'proxy.sock'),
      maxConnections: 4,
    });
    const { socket } = await open(gate.socketPath);
    const answer: Buffer[] = [];
    socket.on('data', (d) => answer.push(d));
    const ended = new Promise((r) => socket.once('end', r));
    socket.end(Buffer.from([0, 1, 2, 255]));
    await ended;
    expect(Buffer.concat(answer)).toEqual(Buffer.concat([Buffer.from('echo:'), Buffer.from([0, 1, 2, 255])]));
  });

  it('holds at most its maximum of connections and closes the rest at once', async () => {
    gate = await openProxyGate({
      socketPath: path.join(dir, 'gate.sock'),
      target: path.join(dir, 'proxy.sock'),
      maxConnections: 3,
    });
    const connections = await Promise.all(Array.from({ length: 10 }, () => open(gate!.socketPath)));
    // The refused seven are closed by the gate without anything sent; the three stay open.
    await expect.poll(() => gate!.refused).toBe(7);
    await expect.poll(() => held.length).toBe(3);
    await expect.poll(() => connections.filter((c) => c.isGone()).length).toBe(7);
    // A slot freed is a slot to use again.
    const kept = connections.filter((c) => !c.isGone());
    expect(kept).toHaveLength(3);
    kept[0]!.socket.destroy();
    await expect.poll(() => held.filter((s) => !s.destroyed).length).toBe(2);
    const next = await open(gate.socketPath);
    await expect.poll(() => held.length).toBe(4);
    expect(next.isGone()).toBe(false);
    expect(gate.refused).toBe(7);
    next.socket.destroy();
    for (const c of kept) c.socket.destroy();
  });
});
