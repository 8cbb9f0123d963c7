"""Sign in with and connect GitHub, GitLab, Bitbucket and Google (Authlib, PKCE, OIDC)."""
