// The admin user list: ordered, filtered, paged both ways.
import { graphql } from "relay-runtime";

export const UsersQuery = graphql`
  query UsersQuery($order: UserOrder) {
    ...Users_list @arguments(order: $order)
  }
`;

export const UsersList = graphql`
  fragment Users_list on Query
  @refetchable(queryName: "UsersPaginationQuery")
  @argumentDefinitions(
    order: { type: "UserOrder" }
    first: { type: "Int", defaultValue: 10 }
    after: { type: "String" }
    last: { type: "Int" }
    before: { type: "String" }
  ) {
    users(orderBy: $order, first: $first, after: $after, last: $last, before: $before)
      @connection(key: "Users_users", filters: ["orderBy"]) {
      totalCount
      edges {
        node {
          id
          firstName
          lastName
          lastLoginAt
        }
      }
    }
  }
`;
