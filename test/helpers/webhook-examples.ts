import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const examples = require('@octokit/webhooks-examples/api.github.com/index.json') as Array<{
  name: string;
  examples: Array<Record<string, unknown>>;
}>;

/**
 * A deep copy of a real webhook payload from @octokit/webhooks-examples, with the repository,
 * sender and installation rewritten to the test's world. `pick` chooses among several examples.
 */
export function examplePayload(
  event: string,
  action: string | null,
  world: {
    repo?: { id: number; fullName: string; defaultBranch?: string };
    sender?: { login: string; id: number; type?: string };
    installationId?: number;
  } = {},
  pick: (p: Record<string, unknown>) => boolean = () => true,
  // biome-ignore lint/suspicious/noExplicitAny: a real payload's deep JSON, which tests read and reshape freely
): Record<string, any> {
  const group = examples.find((e) => e.name === event);
  if (!group) throw new Error(`no example for ${event}`);
  const found = group.examples.find((p) => (action === null || p.action === action) && pick(p));
  if (!found) throw new Error(`no example for ${event}.${action}`);
  // biome-ignore lint/suspicious/noExplicitAny: as above
  const payload = structuredClone(found) as Record<string, any>;
  if (world.repo) {
    const [owner, name] = world.repo.fullName.split('/');
    payload.repository = {
      ...payload.repository,
      id: world.repo.id,
      name,
      full_name: world.repo.fullName,
      default_branch: world.repo.defaultBranch ?? 'main',
      owner: { ...payload.repository?.owner, login: owner },
    };
  }
  if (world.sender)
    payload.sender = { ...payload.sender, ...world.sender, type: world.sender.type ?? 'User' };
  if (world.installationId !== undefined) payload.installation = { id: world.installationId, node_id: 'x' };
  return payload;
}
