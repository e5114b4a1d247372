// Apollo Client cache configuration for groupgraph (docs/api.md, "Caching in clients").
// Every object with an `id` is normalised by __typename + id (ids are global and stable). Objects without
// one belong to their parent: the summaries merge into the parent's, and connections page both ways.
import { relayStylePagination } from "@apollo/client/utilities/index.js";

export const typePolicies = {
  Query: {
    fields: {
      groups: relayStylePagination(["roots", "search"]),
      users: relayStylePagination(["filter", "orderBy"]),
      courses: relayStylePagination(),
      auditLog: relayStylePagination(["action"]),
      accessRequests: relayStylePagination(["direction", "status"]),
    },
  },
  Group: {
    fields: {
      members: relayStylePagination(["roles", "includeNested", "search"]),
      reviewQueue: relayStylePagination(),
      progressReport: relayStylePagination(["courseId", "includeNested"]),
    },
  },
  User: { fields: { activity: relayStylePagination() } },
  GroupProgressSummary: { merge: true },
  LoginStatistics: { merge: true },
};
