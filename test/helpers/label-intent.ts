import { type Intent, webhookIntent } from '../../src/github/webhook-intent.ts';
import { examplePayload } from './webhook-examples.ts';

/** A real `issues.labeled` delivery's intent, in `repo`. */
export function labelIntent(deliveryId: string, repo = 'acme/app'): Intent {
  const payload = examplePayload('issues', 'labeled', {
    repo: { id: 7, fullName: repo },
    sender: { login: 'dev', id: 2 },
    installationId: 1,
  });
  const intent = webhookIntent({ id: deliveryId, name: 'issues', payload }, { slug: 'airlock' });
  if ('ignored' in intent) throw new Error(intent.ignored);
  return intent;
}
