-- OAuth sign-in and account connections (issue 18).

-- One provider account belongs to one user: with two users holding the same GitHub
-- identity, "sign in with GitHub" would not know whom to sign in. (An extension of the
-- seed's unique (user_id, provider), which stays.)
create unique index oauth_connections_provider_identity
  on public.oauth_connections (provider, provider_user_id);

-- One authorization-code flow from "Sign in with..." / "Connect" to the callback: the
-- state (stored hashed) is single-use and expires; it is bound to the browser that
-- started the flow (hash of a random HttpOnly cookie); the PKCE verifier is encrypted
-- (persistence.crypto) and the OIDC nonce kept for the ID-token check. A sign-in ends
-- with a one-time grant code that the same browser exchanges for our tokens, so no token
-- ever travels in a URL. Rows are deleted once expired (server.oauth.flows).
create table public.oauth_flows (
  id uuid primary key,
  state_hash text not null unique,
  browser_hash text not null,
  provider text not null check (provider in ('github', 'google', 'gitlab', 'bitbucket')),
  purpose text not null check (purpose in ('sign_in', 'connect')),
  user_id uuid references public.users(id) on delete cascade,
  code_verifier text not null,
  nonce text,
  redirect_uri text not null,
  return_to text,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  consumed_at timestamptz,
  grant_hash text unique,
  grant_user_id uuid references public.users(id) on delete cascade,
  grant_expires_at timestamptz,
  grant_used_at timestamptz,
  check (purpose = 'sign_in' or user_id is not null)
);
create index oauth_flows_expires on public.oauth_flows (expires_at);

alter table public.oauth_flows enable row level security;
create policy oauth_flows_service on public.oauth_flows
  for all to service_role using (true) with check (true);
revoke all on public.oauth_flows from anon, authenticated;
