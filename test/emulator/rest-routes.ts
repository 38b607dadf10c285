import type { Route } from './route-kit.ts';
import { actionsRoutes } from './routes-actions.ts';
import { appRoutes } from './routes-app.ts';
import { checkRoutes } from './routes-checks.ts';
import { issueRoutes } from './routes-issues.ts';
import { oauthRoutes } from './routes-oauth.ts';
import { pullRoutes } from './routes-pulls.ts';
import { commitRoutes, repoRoutes } from './routes-repos.ts';

export type { Route, RouteContext, RouteResult } from './route-kit.ts';

/** Every REST route, in match order (check runs before `commits/{ref}`). */
export const routes: Route[] = [
  ...appRoutes,
  ...repoRoutes,
  ...checkRoutes,
  ...actionsRoutes,
  ...commitRoutes,
  ...issueRoutes,
  ...pullRoutes,
  ...oauthRoutes,
];
