import type { Store } from './database.ts';

/**
 * A notifier for `channel` that sends at most one notification at a time: calls made while one
 * is being sent are folded into one more after it. Listeners only look for work when told, so
 * one notification after a burst wakes them as well as one per event would, without a round trip
 * to the database for each (the webhook path notifies on every delivery it stores).
 */
export function coalescedNotify(
  store: Pick<Store, 'notify'>,
  channel: string,
  onError: (error: unknown) => void,
): () => void {
  let sending = false;
  let again = false;
  const send = (): void => {
    if (sending) {
      again = true;
      return;
    }
    sending = true;
    store
      .notify(channel)
      .catch(onError)
      .finally(() => {
        sending = false;
        if (again) {
          again = false;
          send();
        }
      });
  };
  return send;
}
