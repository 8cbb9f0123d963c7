-- Refresh tokens and sign-in attempts are read and written only by the auth service:
-- state that explicitly, like every other service-only table (0016), so that no table
-- has RLS on without a policy saying who may touch it. Users get no grants here.
create policy refresh_tokens_service on public.refresh_tokens
  for all to service_role using (true) with check (true);
revoke all on table public.refresh_tokens from anon, authenticated;
grant all on table public.refresh_tokens to service_role;

create policy auth_attempts_service on public.auth_attempts
  for all to service_role using (true) with check (true);
revoke all on table public.auth_attempts from anon, authenticated;
grant all on table public.auth_attempts to service_role;
