import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';
import { errorMessage } from '../errors.ts';
import type { AddressAllowed } from './address-policy.ts';

/** Resolves a host name to every address it has. */
export type LookupAll = (host: string) => Promise<Array<{ address: string; family: number }>>;

/** The host's resolver, all addresses (so one private answer among public ones is still seen). */
export const lookupAll: LookupAll = (host) => lookup(host, { all: true, verbatim: true });

/** Ports egress may reach unless a task says otherwise. */
export const DEFAULT_EGRESS_PORTS: readonly number[] = [80, 443];

/** Whether `host` is on the allowlist; `*.example.com` matches any name below example.com. */
export function hostAllowed(host: string, allow: readonly string[]): boolean {
  const name = host.toLowerCase().replace(/\.$/, '');
  return allow.some((entry) => {
    const pattern = entry.toLowerCase();
    return pattern.startsWith('*.')
      ? name.endsWith(pattern.slice(1)) && name.length > pattern.length - 1
      : name === pattern;
  });
}

/** Where egress may go, and the address to dial; or why not. */
export type EgressDecision =
  | { ok: true; address: string; addresses: string[] }
  | { ok: false; addresses: string[]; reason: string };

/**
 * Decides whether egress may go to `host:port`: an allowlisted name (never an address) on an
 * allowed port, whose every resolved address passes the address policy. On success, `address` is
 * the checked address to dial, so the connection cannot be steered by a second lookup.
 */
export async function egressDecision(
  host: string,
  port: number,
  policy: {
    allow: readonly string[];
    ports: readonly number[];
    lookup: LookupAll;
    addressAllowed: AddressAllowed;
  },
): Promise<EgressDecision> {
  if (isIP(host.replace(/^\[|\]$/g, ''))) {
    return {
      ok: false,
      addresses: [],
      reason: 'addresses cannot be reached directly; use an allowlisted host name',
    };
  }
  if (!hostAllowed(host, policy.allow)) {
    return { ok: false, addresses: [], reason: `${host} is not on this repository's egress allowlist` };
  }
  if (!policy.ports.includes(port))
    return { ok: false, addresses: [], reason: `port ${port} is not allowed` };
  let answers: Array<{ address: string; family: number }>;
  try {
    answers = await policy.lookup(host);
  } catch (error) {
    return { ok: false, addresses: [], reason: `${host} does not resolve: ${errorMessage(error)}` };
  }
  const addresses = answers.map((a) => a.address);
  if (!answers.length) return { ok: false, addresses, reason: `${host} has no addresses` };
  const bad = answers.find((a) => !policy.addressAllowed(a.address, a.family === 6 ? 6 : 4));
  if (bad)
    return {
      ok: false,
      addresses,
      reason: `${host} resolves to ${bad.address}, which is not a public address`,
    };
  return { ok: true, address: answers[0]!.address, addresses };
}
