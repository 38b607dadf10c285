/** Polite, single replies for requests airlock will not act on. */
export function refusalMessage(kind: 'bot' | 'fork', login: string): string {
  if (kind === 'bot') {
    return `Hi @${login}: airlock only takes requests from people, not from bots or apps, so this request was not started.`;
  }
  return [
    `Hi @${login}: this pull request comes from a fork, and airlock does not run on forks by default, so nothing was started.`,
    'A maintainer can set `allow_forks: true` in `.github/airlock.yml` to change that.',
  ].join(' ');
}

/** The reply to someone without write access. */
export function writeAccessRefusal(login: string, permission: string): string {
  return [
    `Hi @${login}: starting, steering or cancelling airlock work needs write access to this repository`,
    `(yours is \`${permission}\`), so this request was not started. A maintainer can ask on your behalf.`,
  ].join(' ');
}
