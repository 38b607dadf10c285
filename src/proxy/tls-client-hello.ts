/** Largest ClientHello accepted (TLS allows a handshake message to span records). */
export const MAX_CLIENT_HELLO_BYTES = 64 * 1024;

/** The outcome of reading the start of a TLS connection. */
export type ClientHelloRead = { complete: false } | { complete: true; serverName: string | undefined };

/**
 * Reads the server name (SNI) from a TLS ClientHello at the start of `buffer`. Returns
 * `{ complete: false }` until the whole ClientHello has arrived; throws when the bytes are not a
 * TLS handshake, so a CONNECT tunnel cannot carry anything but TLS.
 */
export function readClientHello(buffer: Buffer): ClientHelloRead {
  // Reassemble the handshake bytes from consecutive handshake records.
  const parts: Buffer[] = [];
  let offset = 0;
  let have = 0;
  let need = -1;
  while (need < 0 || have < need) {
    if (buffer.length < offset + 5) return { complete: false };
    if (buffer[offset] !== 0x16) throw new Error('not a TLS handshake');
    if (buffer[offset + 1] !== 0x03) throw new Error('unsupported TLS record version');
    const length = buffer.readUInt16BE(offset + 3);
    if (buffer.length < offset + 5 + length) return { complete: false };
    const fragment = buffer.subarray(offset + 5, offset + 5 + length);
    parts.push(fragment);
    have += fragment.length;
    offset += 5 + length;
    if (need < 0 && have >= 4) {
      const head = Buffer.concat(parts);
      if (head[0] !== 0x01) throw new Error('first handshake message is not a ClientHello');
      need = 4 + head.readUIntBE(1, 3);
      if (need > MAX_CLIENT_HELLO_BYTES) throw new Error('ClientHello too large');
    }
    if (offset > MAX_CLIENT_HELLO_BYTES) throw new Error('ClientHello too large');
  }
  const hello = Buffer.concat(parts).subarray(4, need);
  return { complete: true, serverName: serverNameOf(hello) };
}

function serverNameOf(hello: Buffer): string | undefined {
  let p = 2 + 32; // client_version, random
  p += 1 + byteAt(hello, p); // session_id
  p += 2 + hello.readUInt16BE(p); // cipher_suites
  p += 1 + byteAt(hello, p); // compression_methods
  if (p === hello.length) return undefined; // no extensions
  const end = p + 2 + hello.readUInt16BE(p);
  if (end > hello.length) throw new Error('truncated ClientHello extensions');
  p += 2;
  while (p + 4 <= end) {
    const type = hello.readUInt16BE(p);
    const length = hello.readUInt16BE(p + 2);
    const data = hello.subarray(p + 4, p + 4 + length);
    p += 4 + length;
    if (type !== 0) continue;
    let q = 2; // server_name_list length
    while (q + 3 <= data.length) {
      const nameType = byteAt(data, q);
      const nameLength = data.readUInt16BE(q + 1);
      const name = data.subarray(q + 3, q + 3 + nameLength).toString('latin1');
      q += 3 + nameLength;
      if (nameType === 0) return name.toLowerCase();
    }
  }
  return undefined;
}

function byteAt(buffer: Buffer, index: number): number {
  const value = buffer[index];
  if (value === undefined) throw new Error('truncated ClientHello');
  return value;
}
