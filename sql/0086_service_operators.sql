-- The service operator: who may read the whole service's logs and metrics (the operator page
-- across every workspace). A row here per operator account, written only by someone holding
-- the database's service role (`python -m server operators grant EMAIL`); no API writes it, so
-- a signed-in user cannot make themselves an operator. Policies ask
-- `(select public.is_service_operator())`, evaluated once per statement.

create table public.service_operators (
  user_id uuid primary key references public.users(id) on delete cascade,
  granted_at timestamptz not null default now(),
  note text
);

alter table public.service_operators enable row level security;
create policy service_operators_service on public.service_operators
  for all to service_role using (true) with check (true);
revoke all on table public.service_operators from anon, authenticated;
grant all on table public.service_operators to service_role;

-- True when the caller (auth.uid()) is a service operator.
create or replace function public.is_service_operator()
returns boolean
language sql
stable
security definer
set search_path = ''
as $$
  select exists (select 1 from public.service_operators o where o.user_id = auth.uid())
$$;

revoke all on function public.is_service_operator() from public;
grant execute on function public.is_service_operator() to authenticated, service_role;
