// Sign-in as a browser app does it: the session in an HttpOnly cookie.
import { graphql } from "relay-runtime";

export const LoginMutation = graphql`
  mutation LoginMutation($email: String!, $password: String!) {
    login(email: $email, password: $password, cookie: true) {
      expiresAt
      user {
        id
        firstName
      }
    }
  }
`;
