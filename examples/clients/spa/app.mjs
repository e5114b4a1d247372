// A single-page app on another origin, as a new user would write it with Apollo Client 3: sign in (the
// session in an HttpOnly cookie, the CSRF header on every POST), load a group dashboard with persisted
// queries, page the members backwards, download the group's CSV from its link. ?api=<origin of the API>;
// &trusted=1: the API runs trusted documents only, and an ad hoc document must be refused.
// Bundled by esbuild (scripts/clients) and run in headless Chromium; the page ends with RESULT: PASS or FAIL.
import { ApolloClient, HttpLink, InMemoryCache, gql } from "@apollo/client/core";
import { createPersistedQueryLink } from "@apollo/client/link/persisted-queries";

import { typePolicies } from "../type-policies.mjs";

const params = new URLSearchParams(location.search);
const api = params.get("api");
const trusted = params.get("trusted") === "1";
const lines = [];
const problems = [];
const log = (line) => {
  lines.push(line);
  document.getElementById("log").textContent = lines.join("\n");
};
for (const level of ["warn", "error"]) {
  const original = console[level].bind(console);
  console[level] = (...args) => {
    problems.push(`console.${level}: ${args.map(String).join(" ")}`);
    original(...args);
  };
}
const check = (ok, message) => {
  if (!ok) throw new Error(message);
};

async function sha256(text) {
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(text));
  return [...new Uint8Array(digest)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

const requests = { withQuery: 0, hashOnly: 0 };
const countingFetch = (url, options) => {
  const hasQuery = options?.body ? "query" in JSON.parse(options.body) : new URL(url).searchParams.has("query");
  requests[hasQuery ? "withQuery" : "hashOnly"] += 1;
  return fetch(url, options);
};
const client = new ApolloClient({
  link: createPersistedQueryLink({ sha256, useGETForHashedQueries: true }).concat(
    new HttpLink({
      uri: `${api}/graphql`,
      credentials: "include",
      headers: { "x-csrf-token": "1" },
      fetch: countingFetch,
    }),
  ),
  cache: new InMemoryCache({ typePolicies }),
});

const LOGIN = gql`
  mutation Login($email: String!, $password: String!) {
    login(email: $email, password: $password, cookie: true) { token user { id firstName } }
  }
`;
const ROOTS = gql`query Roots { groups(roots: true, first: 5) { edges { node { id name } } } }`;
const DASHBOARD = gql`
  query Dashboard($id: ID!) {
    group(id: $id) {
      id name memberCount(includeNested: true) progressExportUrl
      progressSummary { learnerCount }
      children { id name viewerRole memberCount }
    }
  }
`;
const MEMBERS = gql`
  query Members($id: ID!, $first: Int, $after: String, $last: Int, $before: String) {
    group(id: $id) {
      id
      members(includeNested: true, first: $first, after: $after, last: $last, before: $before) {
        edges { cursor node { id role user { id firstName lastName } } }
        pageInfo { hasNextPage hasPreviousPage startCursor endCursor }
      }
    }
  }
`;
const query = async (document, variables) =>
  (await client.query({ query: document, variables, fetchPolicy: "network-only" })).data;

async function main() {
  const signedIn = await client.mutate({
    mutation: LOGIN,
    variables: { email: "owner@example.com", password: "groupgraph-demo" },
  });
  check(signedIn.data.login.token === "", "the token stays in the HttpOnly cookie");
  check(!document.cookie.includes("groupgraph_session"), "page scripts cannot read the session cookie");
  log(`signed in as ${signedIn.data.login.user.firstName}`);

  const root = (await query(ROOTS, {})).groups.edges[0].node;
  const dashboard = (await query(DASHBOARD, { id: root.id })).group;
  log(`dashboard: ${dashboard.name}, ${dashboard.memberCount} members, children: ${dashboard.children.map((c) => c.name).join(", ")}`);

  // the last page first, then backwards to the start (Relay's loadPrevious; Apollo's relayStylePagination)
  let page = (await query(MEMBERS, { id: root.id, first: null, last: 3 })).group.members;
  let pages = 1;
  while (page.pageInfo.hasPreviousPage) {
    page = (await query(MEMBERS, { id: root.id, first: null, last: 3, before: page.pageInfo.startCursor })).group.members;
    pages += 1;
  }
  check(page.edges.length === dashboard.memberCount, `paged backwards to ${page.edges.length} of ${dashboard.memberCount}`);
  log(`members paged backwards: ${pages} pages, ${page.edges.length} members`);

  // the CSV from its link: the GET a plain <a href> sends, signed in by the cookie, no header
  const link = `${api}${dashboard.progressExportUrl}`;
  const csv = await fetch(link, { credentials: "include" });
  const rows = (await csv.text()).trim().split("\n");
  check(csv.status === 200 && rows[0].startsWith("Student First Name"), `CSV: HTTP ${csv.status}`);
  const anchor = Object.assign(document.createElement("a"), { href: link, textContent: "Download CSV" });
  document.body.append(anchor);
  log(`CSV from ${dashboard.progressExportUrl}: ${rows.length - 1} rows`);

  if (trusted) {
    const adHoc = await fetch(`${api}/graphql`, {
      method: "POST",
      credentials: "include",
      headers: { "content-type": "application/json", "x-csrf-token": "1" },
      body: JSON.stringify({ query: "{ viewer { id email } }" }),
    }).then((r) => r.json());
    check(adHoc.errors?.[0]?.extensions?.code === "PERSISTED_QUERY_NOT_IN_LIST", "an ad hoc document is refused");
    check(requests.withQuery === 0, "every operation ran by hash alone");
    log("trusted documents only: ad hoc document refused (PERSISTED_QUERY_NOT_IN_LIST)");
  }
  log(`requests: ${JSON.stringify(requests)}`);
}

main()
  .then(() => {
    document.getElementById("result").textContent = problems.length
      ? `RESULT: FAIL ${problems.join(" | ")}`
      : "RESULT: PASS";
  })
  .catch((error) => {
    document.getElementById("result").textContent = `RESULT: FAIL ${error.message} ${problems.join(" | ")}`;
  });
