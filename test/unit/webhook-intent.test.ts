import { describe, expect, it } from 'vitest';
import { parseCommand, webhookIntent } from '../../src/github/webhook-intent.ts';
import { examplePayload } from '../helpers/webhook-examples.ts';

const app = { slug: 'airlock-bot' };
const world = {
  repo: { id: 7, fullName: 'acme/widgets' },
  sender: { login: 'alice', id: 1 },
  installationId: 42,
};

describe('parseCommand', () => {
  it('reads /airlock commands and instructions', () => {
    expect(parseCommand('/airlock fix the flaky test', 'airlock-bot')).toEqual({
      command: 'run',
      instruction: 'fix the flaky test',
    });
    expect(parseCommand('/airlock cancel', 'airlock-bot')).toEqual({ command: 'cancel', instruction: '' });
    expect(parseCommand('/AIRLOCK retry', 'airlock-bot')).toEqual({ command: 'retry', instruction: '' });
    expect(parseCommand('/airlock', 'airlock-bot')).toEqual({ command: 'run', instruction: '' });
    expect(parseCommand('thanks!\n/airlock add a test\nfor the parser', 'airlock-bot')).toEqual({
      command: 'run',
      instruction: 'add a test\nfor the parser',
    });
  });

  it('reads mentions of the app, with or without [bot]', () => {
    expect(parseCommand('@airlock-bot please rename foo', 'airlock-bot')?.instruction).toBe(
      'please rename foo',
    );
    expect(parseCommand('hey @airlock-bot[bot] cancel', 'airlock-bot')?.command).toBe('run');
    expect(parseCommand('@airlock-bot cancel', 'airlock-bot')?.command).toBe('cancel');
  });

  it('ignores comments that do not address airlock, quotes and code', () => {
    expect(parseCommand('looks good to me', 'airlock-bot')).toBeUndefined();
    expect(parseCommand('@airlock-botanist hello', 'airlock-bot')).toBeUndefined();
    expect(parseCommand('email me at x@airlock-bot.example', 'airlock-bot')).toBeUndefined();
    expect(parseCommand('> /airlock do it again\nno thanks', 'airlock-bot')).toBeUndefined();
    expect(parseCommand('```\n/airlock run\n```', 'airlock-bot')).toBeUndefined();
    expect(parseCommand('see /airlocked', 'airlock-bot')).toBeUndefined();
  });
});

describe('webhookIntent', () => {
  it('turns issues.labeled into a label intent', () => {
    const payload = examplePayload('issues', 'labeled', world);
    const intent = webhookIntent({ id: 'd1', name: 'issues', payload }, app);
    expect(intent).toMatchObject({
      type: 'label',
      added: true,
      label: payload.label.name,
      issueNumber: payload.issue.number,
      origin: {
        deliveryId: 'd1',
        installationId: 42,
        repo: { fullName: 'acme/widgets' },
        sender: { login: 'alice' },
      },
    });
  });

  it('turns issues.unlabeled into a removal', () => {
    const intent = webhookIntent(
      { id: 'd2', name: 'issues', payload: examplePayload('issues', 'unlabeled', world) },
      app,
    );
    expect(intent).toMatchObject({ type: 'label', added: false });
  });

  it('turns an issue comment command into a command intent', () => {
    const payload = examplePayload('issue_comment', 'created', world);
    payload.comment.body = '/airlock make the README friendlier';
    const intent = webhookIntent({ id: 'd3', name: 'issue_comment', payload }, app);
    expect(intent).toMatchObject({
      type: 'command',
      command: 'run',
      instruction: 'make the README friendlier',
      source: 'issue_comment',
      commentId: payload.comment.id,
    });
  });

  it('carries path, line and hunk of a review comment', () => {
    const payload = examplePayload('pull_request_review_comment', 'created', world);
    payload.comment.body = '@airlock-bot use a constant here';
    const intent = webhookIntent({ id: 'd4', name: 'pull_request_review_comment', payload }, app);
    expect(intent).toMatchObject({
      type: 'command',
      source: 'review_comment',
      isPullRequest: true,
      reviewComment: { path: payload.comment.path, diffHunk: payload.comment.diff_hunk },
      pr: { headRef: payload.pull_request.head.ref },
    });
  });

  it('decides fork by head repository id against base repository id, both ways', () => {
    const fork = (head: { id: number; fork: boolean } | null, base: { id: number }) => {
      const payload = examplePayload('pull_request_review_comment', 'created', world);
      payload.comment.body = '@airlock-bot tidy';
      payload.pull_request.head.repo = head && { ...payload.pull_request.head.repo, ...head };
      payload.pull_request.base.repo = { ...payload.pull_request.base.repo, ...base };
      const intent = webhookIntent({ id: 'df', name: 'pull_request_review_comment', payload }, app);
      return 'pr' in intent ? intent.pr?.fork : undefined;
    };
    // A repository that is itself a fork: its own pull requests are not from a fork.
    expect(fork({ id: 5, fork: true }, { id: 5 })).toBe(false);
    // A pull request from the parent repository into a fork comes from another repository.
    expect(fork({ id: 4, fork: false }, { id: 5 })).toBe(true);
    // A head repository that was deleted is treated as a fork.
    expect(fork(null, { id: 5 })).toBe(true);
  });

  it('accepts a changes-requested review that addresses the app, and ignores others', () => {
    const payload = examplePayload('pull_request_review', 'submitted', world);
    payload.review.state = 'changes_requested';
    payload.review.body = '@airlock-bot please split this function';
    expect(webhookIntent({ id: 'd5', name: 'pull_request_review', payload }, app)).toMatchObject({
      type: 'command',
      source: 'review',
      instruction: 'please split this function',
    });
    payload.review.state = 'approved';
    expect(webhookIntent({ id: 'd6', name: 'pull_request_review', payload }, app)).toHaveProperty('ignored');
  });

  it('ignores the app itself, unknown events and other actions', () => {
    const own = examplePayload('issue_comment', 'created', {
      ...world,
      sender: { login: 'airlock-bot[bot]', id: 9, type: 'Bot' },
    });
    own.comment.body = '/airlock again';
    expect(webhookIntent({ id: 'd7', name: 'issue_comment', payload: own }, app)).toHaveProperty('ignored');
    expect(
      webhookIntent({ id: 'd8', name: 'star', payload: examplePayload('star', null, world) }, app),
    ).toHaveProperty('ignored');
    expect(
      webhookIntent({ id: 'd9', name: 'issues', payload: examplePayload('issues', 'opened', world) }, app),
    ).toHaveProperty('ignored');
    expect(webhookIntent({ id: 'd10', name: 'issues', payload: { action: 'labeled' } }, app)).toHaveProperty(
      'ignored',
    );
  });

  it('keeps other bots as intents so intake can refuse them (judged by type, not name)', () => {
    const payload = examplePayload('issue_comment', 'created', {
      ...world,
      sender: { login: 'renovate', id: 3, type: 'Bot' },
    });
    payload.comment.body = '/airlock bump everything';
    expect(webhookIntent({ id: 'd11', name: 'issue_comment', payload }, app)).toMatchObject({
      type: 'command',
      origin: { sender: { type: 'Bot' }, fromSelf: false },
    });
  });

  it('turns completed CI runs on airlock branches into ci intents only', () => {
    const payload = examplePayload('check_suite', 'completed', world);
    payload.check_suite.head_branch = 'airlock/issue-1-abc';
    expect(webhookIntent({ id: 'd12', name: 'check_suite', payload }, app)).toMatchObject({
      type: 'ci',
      source: 'check_suite',
    });
    payload.check_suite.head_branch = 'main';
    expect(webhookIntent({ id: 'd13', name: 'check_suite', payload }, app)).toHaveProperty('ignored');
  });

  it("keeps CI events that airlock's own push caused (their sender is airlock's bot)", () => {
    const self = { ...world, sender: { login: 'airlock-bot[bot]', id: 9, type: 'Bot' } };
    const run = examplePayload('workflow_run', 'completed', self);
    run.workflow_run.head_branch = 'airlock/issue-1-abc';
    run.workflow_run.head_repository = { ...run.workflow_run.head_repository, full_name: 'acme/widgets' };
    expect(webhookIntent({ id: 'd14', name: 'workflow_run', payload: run }, app)).toMatchObject({
      type: 'ci',
      source: 'workflow_run',
    });
    run.workflow_run.head_repository.full_name = 'mallory/widgets';
    expect(webhookIntent({ id: 'd15', name: 'workflow_run', payload: run }, app)).toEqual({
      ignored: 'a run from a fork',
    });
    const own = examplePayload('check_run', 'completed', self);
    own.check_run.check_suite.head_branch = 'airlock/issue-1-abc';
    own.check_run.app = { ...own.check_run.app, slug: 'airlock-bot' };
    expect(webhookIntent({ id: 'd16', name: 'check_run', payload: own }, app)).toEqual({
      ignored: 'our own check',
    });
    const comment = examplePayload('issue_comment', 'created', self);
    comment.comment.body = '/airlock do it';
    expect(webhookIntent({ id: 'd17', name: 'issue_comment', payload: comment }, app)).toEqual({
      ignored: 'sent by airlock itself',
    });
  });
});
