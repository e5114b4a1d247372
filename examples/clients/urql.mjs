// urql with Graphcache and persisted queries against a live groupgraph: the keys of docs/api.md ("Caching in
// clients"), a dashboard and members paged backwards with relayPagination. Exits non-zero on any error or
// warning (Graphcache warns about objects it cannot key). usage: node urql.mjs http://127.0.0.1:PORT
import { createHash } from "node:crypto";

import { Client, fetchExchange, gql } from "@urql/core";
import { cacheExchange } from "@urql/exchange-graphcache";
import { relayPagination } from "@urql/exchange-graphcache/extras";
import { persistedExchange } from "@urql/exchange-persisted";

const base = process.argv[2];
const signIn = await fetch(`${base}/graphql`, {
  method: "POST",
  headers: { "content-type": "application/json" },
  body: JSON.stringify({
    query: 'mutation { login(email: "owner@example.com", password: "groupgraph-demo") { token } }',
  }),
}).then((r) => r.json());
const token = signIn.data.login.token;
const problems = [];
for (const level of ["warn", "error"]) {
  const original = console[level];
  console[level] = (...args) => {
    problems.push(`console.${level}: ${args.map(String).join(" ")}`);
    original(...args);
  };
}

const embedded = [
  "PageInfo", "GroupProgressSummary", "CourseSummary", "CourseProgress", "StepProgress", "ActivityEvent",
  "ProgressReportRow", "LoginStatistics", "LoginBucket", "ImportReport", "ImportRowError", "LoginPayload",
  "ApiTokenPayload",
];
const keys = Object.fromEntries(embedded.map((name) => [name, () => null]));
for (const prefix of ["Group", "User", "Membership", "Course", "Submission", "ProgressReport", "Activity", "AuditEvent", "AccessRequest"]) {
  keys[`${prefix}Connection`] = () => null;
  keys[`${prefix}Edge`] = () => null;
}
const client = new Client({
  url: `${base}/graphql`,
  fetchOptions: { headers: { authorization: `Bearer ${token}` } },
  exchanges: [
    cacheExchange({ keys, resolvers: { Group: { members: relayPagination() }, Query: { users: relayPagination() } } }),
    persistedExchange({ generateHash: async (query) => createHash("sha256").update(query).digest("hex") }),
    fetchExchange,
  ],
});

const DASHBOARD = gql`
  query UrqlDashboard($id: ID!) {
    group(id: $id) {
      id name memberCount(includeNested: true)
      progressSummary { learnerCount courses { course { id name } enrolledCount completedCount } }
      children { id name viewerRole }
    }
  }
`;
const MEMBERS = gql`
  query UrqlMembers($id: ID!, $last: Int, $before: String) {
    group(id: $id) {
      id
      members(includeNested: true, first: null, last: $last, before: $before) {
        edges { cursor node { id role user { id firstName } } }
        pageInfo { hasPreviousPage startCursor hasNextPage endCursor }
      }
    }
  }
`;
const ROOTS = gql`query UrqlRoots { groups(roots: true, first: 1) { edges { node { id } } } }`;

async function run(document, variables) {
  const result = await client.query(document, variables, { requestPolicy: "network-only" }).toPromise();
  if (result.error) throw result.error;
  return result.data;
}

const rootId = (await run(ROOTS, {})).groups.edges[0].node.id;
const dashboard = (await run(DASHBOARD, { id: rootId })).group;
let page = (await run(MEMBERS, { id: rootId, last: 3 })).group.members;
while (page.pageInfo.hasPreviousPage) {
  page = (await run(MEMBERS, { id: rootId, last: 3, before: page.pageInfo.startCursor })).group.members;
}
if (page.edges.length !== dashboard.memberCount) throw new Error(`urql paged ${page.edges.length} of ${dashboard.memberCount}`);
console.log(JSON.stringify({ client: "urql", group: dashboard.name, members: page.edges.length }));
if (problems.length) {
  console.log(`${problems.length} problem(s):\n${problems.join("\n")}`);
  process.exit(1);
}
