/**
 * Git pkt-line framing (gitprotocol-common): a 4-hex-digit length that counts itself, then the
 * payload; `0000` is a flush packet. Only what the git proxy needs: reading the command list of a
 * `git-receive-pack` request, and writing the answers a refused push gets.
 */

/** One ref update a client asked `git-receive-pack` for. */
export interface RefUpdate {
  oldOid: string;
  newOid: string;
  ref: string;
}

/** The command section of a receive-pack request, read up to its flush packet. */
export interface ReceivePackCommands {
  updates: RefUpdate[];
  capabilities: string[];
  /** Bytes of the request taken up by the command section (the pack, if any, follows). */
  length: number;
}

/** Largest command section accepted before the flush (a push of thousands of refs fits easily). */
export const MAX_COMMAND_SECTION_BYTES = 1024 * 1024;

const OID = /^[0-9a-f]{40}([0-9a-f]{24})?$/;

/**
 * Parses the command list at the start of `buffer`. Returns `undefined` while the flush packet has
 * not arrived yet; throws on anything that is not a well-formed list of ref updates (push
 * certificates and malformed lines included), so the caller refuses rather than guesses.
 */
export function readReceivePackCommands(buffer: Buffer): ReceivePackCommands | undefined {
  const updates: RefUpdate[] = [];
  let capabilities: string[] = [];
  let offset = 0;
  for (;;) {
    if (buffer.length < offset + 4) return undefined;
    const size = Number.parseInt(buffer.subarray(offset, offset + 4).toString('latin1'), 16);
    if (!/^[0-9a-f]{4}$/i.test(buffer.subarray(offset, offset + 4).toString('latin1'))) {
      throw new Error('malformed pkt-line length');
    }
    if (size === 0) return { updates, capabilities, length: offset + 4 };
    if (size < 4) throw new Error(`unexpected pkt-line of size ${size} in the command list`);
    if (buffer.length < offset + size) return undefined;
    let line = buffer.subarray(offset + 4, offset + size).toString('utf8');
    offset += size;
    if (line.endsWith('\n')) line = line.slice(0, -1);
    if (line.startsWith('shallow ')) continue;
    const nul = line.indexOf('\0');
    if (nul >= 0) {
      if (updates.length > 0) throw new Error('capabilities after the first command');
      capabilities = line
        .slice(nul + 1)
        .split(' ')
        .filter(Boolean);
      line = line.slice(0, nul);
    }
    const [oldOid, newOid, ref, ...rest] = line.split(' ');
    if (!oldOid || !newOid || !ref || rest.length > 0 || !OID.test(oldOid) || !OID.test(newOid)) {
      throw new Error(`not a ref update command: ${JSON.stringify(line.slice(0, 80))}`);
    }
    updates.push({ oldOid, newOid, ref });
  }
}

/** Encodes one pkt-line. */
export function pktLine(payload: string | Buffer): Buffer {
  const body = typeof payload === 'string' ? Buffer.from(payload) : payload;
  const size = body.length + 4;
  if (size > 65520) throw new Error('pkt-line payload too large');
  return Buffer.concat([Buffer.from(size.toString(16).padStart(4, '0')), body]);
}

/** The flush packet. */
export const FLUSH = Buffer.from('0000');

/**
 * The body of a `git-receive-pack` answer that refuses every update, in the form the client asked
 * for: report-status lines (`ng <ref> <reason>`), inside side-band channel 1 when it negotiated
 * side-band, with the explanation also on channel 2 so git prints it as `remote: …`. A client that
 * asked for no report gets an `ERR` packet, which git prints as a fatal remote error.
 */
export function refusedPushResponse(
  commands: Pick<ReceivePackCommands, 'updates' | 'capabilities'>,
  reasons: ReadonlyMap<string, string>,
  message: string,
  unpack = 'ok',
): Buffer {
  const caps = new Set(commands.capabilities);
  if (!caps.has('report-status') && !caps.has('report-status-v2')) {
    return pktLine(`ERR ${message}`);
  }
  const report = Buffer.concat([
    pktLine(`unpack ${unpack}\n`),
    ...commands.updates.map((u) => pktLine(`ng ${u.ref} ${reasons.get(u.ref) ?? message}\n`)),
    FLUSH,
  ]);
  const sideband = caps.has('side-band-64k') ? 65515 : caps.has('side-band') ? 995 : 0;
  if (!sideband) return report;
  const out: Buffer[] = [pktLine(Buffer.concat([Buffer.from([2]), Buffer.from(`${message}\n`)]))];
  for (let i = 0; i < report.length; i += sideband) {
    out.push(pktLine(Buffer.concat([Buffer.from([1]), report.subarray(i, i + sideband)])));
  }
  out.push(FLUSH);
  return Buffer.concat(out);
}
