import { Readable } from 'node:stream';
import { buffer } from 'node:stream/consumers';
import { describe, expect, it } from 'vitest';
import {
  basicSecret,
  headerSecret,
  REDACTED_MARK,
  RedactingStream,
  secretForms,
} from '../../src/proxy/destination-secret.ts';

const TOKEN = 'tok_1234567890abcdef';

async function redact(chunks: string[], forms: string[]) {
  const stream = new RedactingStream(forms);
  const out = await buffer(Readable.from(chunks.map((c) => Buffer.from(c))).pipe(stream));
  return { text: out.toString(), found: stream.found };
}

describe('RedactingStream', () => {
  it('removes a credential split across chunks at every offset', async () => {
    const body = `before ${TOKEN} middle ${TOKEN} after`;
    for (let cut = 0; cut <= body.length; cut++) {
      const { text, found } = await redact([body.slice(0, cut), body.slice(cut)], [TOKEN]);
      expect(text, `cut at ${cut}`).toBe(`before ${REDACTED_MARK} middle ${REDACTED_MARK} after`);
      expect(found).toBe(2);
    }
  });

  it('passes a body without the credential through unchanged, byte by byte', async () => {
    const body = 'tok_ nearly tok_123456789 but not quite';
    const { text, found } = await redact([...body], [TOKEN]);
    expect(text).toBe(body);
    expect(found).toBe(0);
  });
});

describe('destination secrets', () => {
  it('Basic credentials: the header carries base64(user:password); the password and encoding are redacted', () => {
    const secret = basicSecret({
      name: 'pypi',
      host: 'PyPI.Example.com',
      port: 443,
      username: 'bot',
      password: 'hunter2hunter2',
    });
    expect(secret.host).toBe('pypi.example.com');
    expect(secret.headerValue).toBe(`Basic ${Buffer.from('bot:hunter2hunter2').toString('base64')}`);
    expect(secretForms(secret)).toEqual(
      expect.arrayContaining(['hunter2hunter2', Buffer.from('bot:hunter2hunter2').toString('base64')]),
    );
  });

  it('header credentials: an optional scheme goes before the value', () => {
    const bearer = headerSecret({
      name: 'n',
      host: 'h.example',
      port: 443,
      header: 'Authorization',
      scheme: 'Bearer',
      value: TOKEN,
    });
    expect([bearer.header, bearer.headerValue]).toEqual(['authorization', `Bearer ${TOKEN}`]);
    const bare = headerSecret({ name: 'n', host: 'h.example', port: 443, header: 'X-Api-Key', value: TOKEN });
    expect([bare.header, bare.headerValue]).toEqual(['x-api-key', TOKEN]);
  });
});
