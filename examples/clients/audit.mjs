// The GraphQL-over-HTTP audit (graphql-http's auditServer) against a live groupgraph: every check must pass,
// with no warning. usage: node audit.mjs http://127.0.0.1:PORT/graphql
import { auditServer } from "graphql-http";

const results = await auditServer({ url: process.argv[2] });
const counts = { ok: 0, warn: 0, error: 0 };
for (const result of results) {
  counts[result.status] += 1;
  if (result.status !== "ok") console.log(`${result.status}: ${result.name}: ${result.reason}`);
}
console.log(`graphql-http audit: ${counts.ok} ok, ${counts.warn} warn, ${counts.error} error`);
process.exit(counts.warn || counts.error ? 1 : 0);
