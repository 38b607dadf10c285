/**
 * Node flags for the process that runs airlock: `npm start`, `npm run airlock` and the `airlock`
 * command (its shebang) all pass them; test/unit/node-flags.test.ts keeps those in step with this list.
 *
 * They are for the task proxies, which relay every byte of git and model traffic. Node gives each
 * socket read its own buffer, which only a garbage collection frees; with V8's defaults a 200 MB
 * clone set off a full mark-compact about every 13 MB and GC was half the proxy's CPU. Counting
 * that external memory in V8's global heap limit, and starting the old generation at 64 MB, cuts
 * the proxy's CPU per clone from 0.58 s to 0.26 s (`npm run bench -- proxy`), for at most that
 * much more garbage held between collections. Neither flag can be set once the process runs, and
 * NODE_OPTIONS refuses both.
 */
export const NODE_FLAGS = ['--initial-old-space-size=64', '--external-memory-accounted-in-global-limit'];
