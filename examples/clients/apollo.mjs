// Apollo Client 3 against a live groupgraph, as a browser dashboard uses it: cookie sign-in (with the CSRF
// header), automatic persisted queries, a group dashboard, members paged forwards and then backwards, the
// user list ordered, a report that shares objects with the dashboard, the group's CSV by its plain link.
// Exits non-zero on any error, and on any warning Apollo prints (e.g. "Cache data may be lost").
//
// usage: node apollo.mjs http://127.0.0.1:PORT [--trusted]
//   --trusted: the server runs trusted documents only; every operation must go by hash alone.
import { createHash } from "node:crypto";

import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core/index.js";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries/index.js";

import { typePolicies } from "./type-policies.mjs";

const base = process.argv[2];
const trusted = process.argv.includes("--trusted");
const problems = [];
for (const level of ["warn", "error"]) {
  const original = console[level];
  console[level] = (...args) => {
    problems.push(`console.${level}: ${args.map(String).join(" ")}`);
    original(...args);
  };
}

// the browser's cookie jar, for one origin
let cookie = "";
const sent = { withQuery: 0, hashOnly: 0, notFound: 0 };
async function browserFetch(url, options = {}) {
  const headers = new Headers(options.headers);
  if (cookie) headers.set("cookie", cookie);
  const body = options.body ? JSON.parse(options.body) : Object.fromEntries(new URL(url).searchParams);
  if (body.query) sent.withQuery += 1;
  else sent.hashOnly += 1;
  const response = await fetch(url, { ...options, headers });
  const setCookie = response.headers.get("set-cookie");
  if (setCookie) cookie = setCookie.split(";")[0];
  if (response.headers.get("cache-control") !== "no-store") problems.push(`no Cache-Control: no-store on ${url}`);
  const clone = response.clone();
  const text = await clone.text();
  if (text.includes("PERSISTED_QUERY_NOT_FOUND")) sent.notFound += 1;
  return response;
}

const sha256 = (text) => createHash("sha256").update(text).digest("hex");
const client = new ApolloClient({
  link: createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({
      uri: `${base}/graphql`,
      fetch: browserFetch,
      headers: { "apollo-require-preflight": "true" },
    }),
  ),
  cache: new InMemoryCache({ typePolicies }),
});

const LOGIN = gql`
  mutation Login($email: String!, $password: String!) {
    login(email: $email, password: $password, cookie: true) {
      token
      expiresAt
      user { id firstName }
    }
  }
`;
const ROOTS = gql`
  query Roots {
    groups(roots: true, first: 5) { edges { node { id name } } }
  }
`;
const DASHBOARD = gql`
  query Dashboard($id: ID!) {
    group(id: $id) {
      id
      name
      memberCount(includeNested: true)
      progressExportUrl
      progressSummary { learnerCount }
      children { id name viewerRole memberCount }
    }
  }
`;
const REPORT = gql`
  query Report($id: ID!) {
    group(id: $id) {
      id
      progressSummary { courses { course { id name } enrolledCount completedCount } }
    }
  }
`;
const MEMBERS = gql`
  query Members($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    group(id: $id) {
      id
      members(includeNested: true, first: $first, after: $after, last: $last, before: $before) {
        totalCount
        edges { cursor node { id role user { id firstName lastName } } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
  }
`;
const USERS = gql`
  query Users($order: UserOrder, $first: Int, $last: Int, $before: String) {
    users(orderBy: $order, first: $first, last: $last, before: $before) {
      totalCount
      edges { cursor node { id lastName lastLoginAt } }
      pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
    }
  }
`;

function check(condition, message) {
  if (!condition) throw new Error(message);
}

async function query(document, variables, fetchPolicy = "network-only") {
  const result = await client.query({ query: document, variables, fetchPolicy, errorPolicy: "none" });
  check(!result.errors, JSON.stringify(result.errors));
  return result.data;
}

const login = await client.mutate({
  mutation: LOGIN,
  variables: { email: "owner@example.com", password: "groupgraph-demo" },
});
check(login.data.login.token === "" && cookie.startsWith("groupgraph_session="), "cookie sign-in");

const roots = await query(ROOTS, {});
const root = roots.groups.edges[0].node;
const dashboard = await query(DASHBOARD, { id: root.id });
await query(REPORT, { id: root.id }); // shares Group.progressSummary with the dashboard
await query(DASHBOARD, { id: root.id }); // the dashboard again: no "Cache data may be lost"
await query(DASHBOARD, { id: root.id }, "cache-first");

// members forwards, three at a time, then backwards from the end (Relay's loadPrevious); the cache's
// relayStylePagination joins the pages, so each answer holds every edge fetched so far
let forwards = [];
let after = null;
for (;;) {
  const page = (await query(MEMBERS, { id: root.id, first: 3, after })).group.members;
  forwards = page.edges.map((e) => e.node.id);
  if (!page.pageInfo.hasNextPage) break;
  after = page.pageInfo.endCursor;
}
client.cache.evict({ id: client.cache.identify({ __typename: "Group", id: root.id }), fieldName: "members" });
client.cache.gc();
let backwards = [];
let before = null;
for (;;) {
  const page = (await query(MEMBERS, { id: root.id, first: null, last: 3, before })).group.members;
  backwards = page.edges.map((e) => e.node.id);
  if (!page.pageInfo.hasPreviousPage) break;
  before = page.pageInfo.startCursor;
}
check(forwards.length === dashboard.group.memberCount, `members: ${forwards.length} of ${dashboard.group.memberCount}`);
check(JSON.stringify(forwards) === JSON.stringify(backwards), "paging backwards gives the same members");

const recent = (await query(USERS, { order: { field: "LAST_LOGIN_AT", direction: "DESC" }, first: 3 })).users;
check(recent.edges[0].node.lastLoginAt?.endsWith("Z"), "the owner signed in last; instants end in Z");
const last = (await query(USERS, { order: { field: "LAST_NAME" }, first: null, last: 2 })).users;
check(last.edges.length === 2 && last.pageInfo.hasPreviousPage, "the last page of users");

// the CSV by its plain link: the session cookie signs the download in, no header needed
const csv = await fetch(`${base}${dashboard.group.progressExportUrl}`, { headers: { cookie } });
const lines = (await csv.text()).trim().split("\n");
check(csv.status === 200 && lines[0].startsWith("Student First Name"), `CSV download: ${csv.status}`);

console.log(
  JSON.stringify({
    group: dashboard.group.name,
    members: forwards.length,
    csvRows: lines.length - 1,
    requests: sent,
  }),
);
if (trusted) check(sent.withQuery === 0, "trusted documents: every operation went by hash alone");
else check(sent.notFound > 0 && sent.hashOnly > sent.notFound, "automatic persisted queries registered, then reused");
if (problems.length) {
  console.log(`${problems.length} problem(s):\n${problems.join("\n")}`);
  process.exit(1);
}
