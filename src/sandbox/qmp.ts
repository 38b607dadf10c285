import { connect } from 'node:net';
import { SandboxError } from '../errors.ts';

/**
 * Runs one QMP command on a QEMU monitor socket: reads the greeting, negotiates capabilities,
 * sends the command and resolves with its `return` value. Asynchronous events are skipped.
 */
export function qmpExecute(
  socketPath: string,
  command: string,
  args?: Record<string, unknown>,
  timeoutMs = 120_000,
): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const fail = (message: string) => {
      socket.destroy();
      reject(new SandboxError('guest_error', `QMP ${command}: ${message}`));
    };
    const timer = setTimeout(() => fail(`no answer within ${timeoutMs} ms`), timeoutMs);
    let buffer = '';
    let step: 'greeting' | 'capabilities' | 'command' = 'greeting';
    socket.setEncoding('utf8');
    socket.on('error', (error) => fail(error.message));
    socket.on('close', () => fail('the monitor closed the connection'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      for (let i = buffer.indexOf('\n'); i >= 0; i = buffer.indexOf('\n')) {
        const line = buffer.slice(0, i).trim();
        buffer = buffer.slice(i + 1);
        if (!line) continue;
        let message: { QMP?: unknown; return?: unknown; error?: { desc?: string }; event?: string };
        try {
          message = JSON.parse(line);
        } catch {
          return fail(`unreadable answer: ${line.slice(0, 200)}`);
        }
        if (message.event) continue;
        if (message.error) return fail(message.error.desc ?? JSON.stringify(message.error));
        if (step === 'greeting' && message.QMP) {
          step = 'capabilities';
          socket.write(`${JSON.stringify({ execute: 'qmp_capabilities' })}\n`);
        } else if (step === 'capabilities' && 'return' in message) {
          step = 'command';
          socket.write(`${JSON.stringify({ execute: command, ...(args ? { arguments: args } : {}) })}\n`);
        } else if (step === 'command' && 'return' in message) {
          clearTimeout(timer);
          socket.removeAllListeners('close');
          socket.end();
          resolve(message.return);
        }
      }
    });
  });
}
