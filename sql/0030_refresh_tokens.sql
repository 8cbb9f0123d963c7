-- Rotating refresh tokens, one family per sign-in session.
-- A sign-in creates a public.user_sessions_extended row; its id is the family id of every
-- refresh token issued for that session. Tokens are opaque random strings stored only as
-- sha256 hashes. Each use rotates the token (rotated_at set, a child issued); presenting a
-- rotated token again is treated as theft and revokes the whole family (the session).
-- user_sessions_extended gains revoked_at (sign-out, revoke from the session list, reuse).

alter table public.user_sessions_extended add column if not exists revoked_at timestamptz;

create table public.refresh_tokens (
  id uuid primary key default gen_random_uuid(),
  token_hash text not null unique,
  user_id uuid not null references public.users(id) on delete cascade,
  session_id uuid not null references public.user_sessions_extended(id) on delete cascade,
  parent_id uuid references public.refresh_tokens(id) on delete set null,
  created_at timestamptz not null default now(),
  expires_at timestamptz not null,
  rotated_at timestamptz,
  revoked_at timestamptz
);

create index idx_refresh_tokens_session on public.refresh_tokens(session_id);
create index idx_refresh_tokens_user on public.refresh_tokens(user_id);

-- Only the service (the auth endpoints) reads or writes refresh tokens: RLS on, no policies.
alter table public.refresh_tokens enable row level security;
