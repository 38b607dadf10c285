import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { ConfigError } from '../errors.ts';

/** app.yml at the root of the checkout: the permissions and events airlock asks for. */
export const APP_MANIFEST_FILE = new URL('../../app.yml', import.meta.url);

// Written as in a shell, so app.yml reads as what it becomes.
// biome-ignore lint/suspicious/noTemplateCurlyInString: app.yml's placeholder, not a template
const PUBLIC_URL_PLACEHOLDER = '${AIRLOCK_PUBLIC_URL}';

/** The part of GitHub's app manifest airlock relies on (GitHub accepts more fields; they pass through). */
export const AppManifest = z.looseObject({
  name: z.string().min(1),
  url: z.url(),
  description: z.string().optional(),
  public: z.boolean(),
  hook_attributes: z.object({ url: z.url(), active: z.boolean().optional() }),
  callback_urls: z.array(z.url()).min(1),
  redirect_url: z.url(),
  setup_url: z.url().optional(),
  default_permissions: z.record(z.string(), z.enum(['read', 'write'])),
  default_events: z.array(z.string()),
});
export type AppManifest = z.infer<typeof AppManifest>;

/**
 * Reads app.yml and fills in the addresses only known at registration: `${AIRLOCK_PUBLIC_URL}`
 * (webhooks, the sign-in callback, the post-install page) and `redirect_url`, where GitHub sends
 * the browser back with the new app's code. The result is what the registration page posts.
 */
export function appManifest(options: { publicUrl: string; redirectUrl: string; text?: string }): AppManifest {
  const text = options.text ?? readFileSync(APP_MANIFEST_FILE, 'utf8');
  const publicUrl = options.publicUrl.replace(/\/$/, '');
  const filled = text.replaceAll(PUBLIC_URL_PLACEHOLDER, publicUrl);
  const parsed = AppManifest.safeParse({ ...parseYaml(filled), redirect_url: options.redirectUrl });
  if (!parsed.success) {
    throw new ConfigError(
      'app.yml is not a usable GitHub App manifest',
      parsed.error.issues.map((issue) => `${issue.path.join('.') || '(top level)'}: ${issue.message}`),
      { hint: 'restore app.yml from the airlock checkout' },
    );
  }
  return parsed.data;
}
