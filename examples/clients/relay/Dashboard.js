// A group dashboard as a Relay app writes it: the group, its children, a summary, members paged both ways.
import { graphql } from "relay-runtime";

export const DashboardQuery = graphql`
  query DashboardQuery($groupId: ID!) {
    viewer {
      id
      firstName
    }
    group(id: $groupId) {
      id
      name
      memberCount(includeNested: true)
      children {
        id
        name
        viewerRole
      }
      progressSummary {
        learnerCount
      }
      ...Dashboard_group
    }
  }
`;

export const DashboardGroup = graphql`
  fragment Dashboard_group on Group
  @refetchable(queryName: "DashboardMembersPaginationQuery")
  @argumentDefinitions(
    first: { type: "Int", defaultValue: 3 }
    after: { type: "String" }
    last: { type: "Int" }
    before: { type: "String" }
  ) {
    members(includeNested: true, first: $first, after: $after, last: $last, before: $before)
      @connection(key: "Dashboard_members", filters: ["includeNested"]) {
      totalCount
      edges {
        node {
          id
          role
          createdAt
          user {
            id
            firstName
            lastName
          }
        }
      }
    }
  }
`;
