import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { serve } from '@hono/node-server';
import type { AuditSink } from '../audit-sink.ts';
import type { Clock } from '../clock.ts';
import { mintRepositoryToken, mintTaskToken, type TaskTokenDeps } from '../github/task-token.ts';
import type { Logger } from '../logger.ts';
import type { Store } from '../store/database.ts';
import { splitRepo, type Task } from '../tasks/task.ts';
import type { ResultPublisher } from '../tasks/task-lifecycle.ts';
import type { PromptThread } from '../tasks/task-thread.ts';
import { type AppInfo, type ControlPlaneServices, controlChannelApi } from './control-channel.ts';

/** The control plane's internal listener for workers. */
export interface InternalApi {
  port: number;
  close(): Promise<void>;
}

/**
 * What the control plane does for workers with the App key it alone holds: each token minted for
 * the task whose lease the asking worker holds (checked by controlChannelApi) and recorded in the
 * task's chain as when the control plane ran the task itself; the read-only token for exactly the
 * repositories the operator policy lets that task read (never what a worker asks for).
 */
export function controlPlaneServices(deps: {
  token: Omit<TaskTokenDeps, 'fetch'>;
  audit: AuditSink;
  readRepositories(task: Task): readonly string[];
  promptThread(task: Task): Promise<PromptThread | undefined>;
  publish(): ResultPublisher | undefined;
  app(): AppInfo;
}): ControlPlaneServices {
  /** What a token is minted for: a task, or an environment build (`what` names which). */
  type Subject = { id: string; repoFullName: string; installationId: number | null };
  const installation = (subject: Subject, what = 'task'): number => {
    if (subject.installationId === null) throw new Error(`${what} ${subject.id} has no GitHub installation`);
    return subject.installationId;
  };
  const minted = (
    subject: { id: string },
    token: { repositories: string[]; permissions: object; expiresAt: string },
  ) =>
    deps.audit.append(subject.id, 'token.minted', {
      repository: token.repositories,
      permissions: token.permissions,
      expires_at: token.expiresAt,
      for: 'worker',
    });
  /** A token for the subject's own repository, recorded in its chain. */
  const ownRepositoryToken = async (subject: Subject, what: string) => {
    const { owner, repo } = splitRepo(subject.repoFullName);
    const token = await mintTaskToken(deps.token, {
      installationId: installation(subject, what),
      repository: { owner, name: repo },
    });
    minted(subject, token);
    return token;
  };
  return {
    mintTaskToken: (task) => ownRepositoryToken(task, 'task'),
    mintBuildToken: (build) => ownRepositoryToken(build, 'environment build'),
    async mintReadToken(task) {
      const names = deps
        .readRepositories(task)
        .filter((name) => name.toLowerCase() !== task.repoFullName.toLowerCase());
      if (names.length === 0) return undefined;
      const { owner } = splitRepo(task.repoFullName);
      const token = await mintRepositoryToken(deps.token, {
        installationId: installation(task),
        owner,
        names: names.map((name) => splitRepo(name).repo),
        contents: 'read',
      });
      minted(task, token);
      return token;
    },
    promptThread: (task) => deps.promptThread(task),
    async publish(task, result) {
      const publish = deps.publish();
      if (!publish)
        throw new Error('this control plane cannot open pull requests yet (GitHub is not connected)');
      return publish(task, result);
    },
    app: () => deps.app(),
  };
}

/** Starts the internal API for workers on its own host and port (not the public web port). */
export async function startInternalApi(deps: {
  host: string;
  port: number;
  store: Store;
  secret: string;
  clock: Clock;
  services: ControlPlaneServices;
  log: Logger;
}): Promise<InternalApi> {
  const app = controlChannelApi(deps);
  const server = await new Promise<ReturnType<typeof serve>>((resolve, reject) => {
    const s = serve({ fetch: app.fetch, hostname: deps.host, port: deps.port }, () => resolve(s));
    s.once('error', reject);
  });
  const port = (server.address() as AddressInfo).port;
  deps.log.info({ host: deps.host, port }, 'internal API for workers listening');
  return {
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        (server as Server).closeAllConnections();
      }),
  };
}
