// The mentor's red dot with the graphql-ws client, as a browser app would use it, under Node.
//
//   node red-dot.mjs '{"subscribeUrl": "ws://127.0.0.1:8001/graphql", "mutateUrl": "http://127.0.0.1:8002/graphql",
//                      "mentorToken": "...", "adminToken": "...", "leaderToken": "...", "groupId": "...",
//                      "learnerId": "...", "stepId": "...", "membershipId": "..."}'
//
// Subscribes to reviewQueueChanged on one worker, hands in an assignment through another (twice), prints how
// long each new count took to arrive, then removes the mentor from the group and prints how the stream ended.
// One line of JSON on stdout; exit 0 when both happened.
import { createClient } from 'graphql-ws';
import WebSocket from 'ws';

const config = JSON.parse(process.argv[2] ?? process.env.LIVE_CONFIG);
const RED_DOT = `subscription($g: ID!) { reviewQueueChanged(groupId: $g) { pendingCount submission { id status } } }`;

const client = createClient({
  url: config.subscribeUrl,
  webSocketImpl: WebSocket,
  connectionParams: { Authorization: `Bearer ${config.mentorToken}` },
  retryAttempts: 0,
});

async function graphql(token, query, variables) {
  const response = await fetch(config.mutateUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
    body: JSON.stringify({ query, variables }),
  });
  return response.json();
}

// every message of the subscription, in order, each with the time it arrived
const arrived = [];
let wake = () => {};
function record(kind, value) {
  arrived.push({ kind, value, at: performance.now() });
  wake();
}
async function next() {
  while (arrived.length === 0) await new Promise((resolve) => { wake = resolve; });
  return arrived.shift();
}

const timer = setTimeout(() => {
  console.log(JSON.stringify({ ok: false, reason: 'timed out', arrived }));
  process.exit(2);
}, 20000);

client.subscribe(
  { query: RED_DOT, variables: { g: config.groupId } },
  {
    next: (value) => record('next', value),
    error: (error) => record('error', error),
    complete: () => record('complete', null),
  },
);

const first = await next(); // the red dot as it is now: the subscription is in place
const before = first.value.data.reviewQueueChanged.pendingCount;

// two submissions, one after the other: the first meets freshly started processes, the second warm ones
const rounds = [];
for (const round of ['first', 'second']) {
  const sent = performance.now();
  const submitted = await graphql(
    config.adminToken,
    'mutation($e: [ProgressEventInput!]!) { recordProgress(events: $e) }',
    { e: [{ userId: config.learnerId, kind: 'SUBMITTED', stepId: config.stepId, body: `handed in from Node (${round})` }] },
  );
  const answered = performance.now();
  const change = await next();
  rounds.push({
    recorded: submitted.data?.recordProgress,
    count: change.value?.data?.reviewQueueChanged?.pendingCount,
    msFromSubmissionSent: +(change.at - sent).toFixed(1),
    msAfterSubmissionAnswered: +(change.at - answered).toFixed(1),
  });
}

const removing = performance.now();
await graphql(config.leaderToken, 'mutation($ids: [ID!]!) { removeMembers(membershipIds: $ids) }', { ids: [config.membershipId] });
const end = await next();
const codes = end.kind === 'error' ? end.value.map((e) => e.extensions?.code) : [];

clearTimeout(timer);
await client.dispose();
const result = {
  ok: rounds.every((r, n) => r.recorded === 1 && r.count === before + n + 1) && codes.includes('FORBIDDEN'),
  pendingBefore: before,
  rounds,
  endedWith: codes,
  msFromRemovalToEnd: +(end.at - removing).toFixed(1),
};
console.log(JSON.stringify(result));
process.exit(result.ok ? 0 : 1);
