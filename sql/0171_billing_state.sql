-- Billing state beside the seed's tables (docs/billing.md, sql/README.md "Billing rules").
--
-- subscriptions.past_due_since: when Stripe first reported the subscription past_due; the plan
-- is kept for the grace period (7 days) after it. Cleared when it is paid again.
alter table public.subscriptions add column if not exists past_due_since timestamptz;
-- The Stripe price the subscription is on (which plan/interval it maps to, for the record).
alter table public.subscriptions add column if not exists stripe_price_id text;

-- Bytes of files per workspace, kept by triggers on files and projects (never a scan at check
-- time). No foreign key on purpose: deleting a workspace cascades to its projects and files,
-- whose triggers update this row twice in the transaction, and PostgreSQL re-checks a foreign
-- key on every update of a row version the transaction wrote, after the workspace is gone.
-- The row is deleted with its workspace by the trigger below instead.
create table if not exists public.workspace_storage (
  workspace_id uuid primary key,
  bytes bigint not null default 0,
  updated_at timestamptz not null default now()
);
alter table public.workspace_storage drop constraint if exists workspace_storage_workspace_id_fkey;
alter table public.workspace_storage enable row level security;
drop policy if exists workspace_storage_service on public.workspace_storage;
create policy workspace_storage_service on public.workspace_storage
  for all to service_role using (true) with check (true);
revoke all on public.workspace_storage from anon, authenticated;
grant select, insert, update, delete on public.workspace_storage to service_role;

-- Meter events sent to Stripe: one row per (payer, usage window), so a window is reported
-- once whatever the retries (the row's identifier is the meter event's idempotent identifier).
create table if not exists public.billing_meter_reports (
  owner_id uuid not null references public.users(id) on delete cascade,
  window_start timestamptz not null,
  tokens bigint not null check (tokens >= 0),
  identifier text not null unique,
  reported_at timestamptz,
  created_at timestamptz not null default now(),
  primary key (owner_id, window_start)
);
alter table public.billing_meter_reports enable row level security;
drop policy if exists billing_meter_reports_service on public.billing_meter_reports;
create policy billing_meter_reports_service on public.billing_meter_reports
  for all to service_role using (true) with check (true);
revoke all on public.billing_meter_reports from anon, authenticated;
grant select, insert, update, delete on public.billing_meter_reports to service_role;

-- AI reservations counted per payer go through the project: active jobs by project.
create index if not exists ai_jobs_active_by_project
  on public.ai_jobs (project_id)
  where status in ('pending', 'running');
create index if not exists idx_code_executions_project_created
  on public.code_executions (project_id, created_at);

-- files.size_bytes changes move the workspace's counter (cascaded deletes included).
create or replace function public.track_workspace_storage()
returns trigger language plpgsql security definer set search_path = '' as $$
declare
  delta bigint;
  target uuid;
begin
  if tg_op = 'INSERT' then
    delta := coalesce(new.size_bytes, 0);
    target := new.project_id;
  elsif tg_op = 'DELETE' then
    delta := -coalesce(old.size_bytes, 0);
    target := old.project_id;
  else
    if new.project_id is distinct from old.project_id then
      perform public.add_project_storage(old.project_id, -coalesce(old.size_bytes, 0));
      delta := coalesce(new.size_bytes, 0);
    else
      delta := coalesce(new.size_bytes, 0) - coalesce(old.size_bytes, 0);
    end if;
    target := new.project_id;
  end if;
  if delta <> 0 then
    perform public.add_project_storage(target, delta);
  end if;
  return null;
end $$;

-- Adds delta bytes to the counter of the project's workspace. Only an update: every workspace
-- gets its row when it is created (below), so a file trigger that fires while its workspace is
-- being deleted (cascade) changes nothing instead of inserting a row for a vanished workspace.
create or replace function public.add_project_storage(p_project uuid, p_delta bigint)
returns void language sql security definer set search_path = '' as $$
  update public.workspace_storage
  set bytes = greatest(bytes + p_delta, 0), updated_at = now()
  where workspace_id = (select workspace_id from public.projects where id = p_project)
$$;

create or replace function public.create_workspace_storage()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  insert into public.workspace_storage (workspace_id) values (new.id)
  on conflict (workspace_id) do nothing;
  return null;
end $$;

drop trigger if exists workspaces_storage on public.workspaces;
create trigger workspaces_storage after insert on public.workspaces
  for each row execute function public.create_workspace_storage();

-- Fires after the cascades (constraint triggers "RI_..." sort first), so nothing recreates it.
create or replace function public.drop_workspace_storage()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  delete from public.workspace_storage where workspace_id = old.id;
  return null;
end $$;

drop trigger if exists workspaces_storage_drop on public.workspaces;
create trigger workspaces_storage_drop after delete on public.workspaces
  for each row execute function public.drop_workspace_storage();

drop trigger if exists files_storage on public.files;
create trigger files_storage after insert or delete or update of size_bytes, project_id
  on public.files for each row execute function public.track_workspace_storage();

-- A deleted project takes its files' bytes with it. Its files are deleted by the cascade after
-- the project row is gone, when their own trigger no longer finds the workspace: so the
-- project's total is subtracted here, before.
create or replace function public.release_project_storage()
returns trigger language plpgsql security definer set search_path = '' as $$
begin
  update public.workspace_storage
  set bytes = greatest(bytes - (select coalesce(sum(size_bytes), 0) from public.files
                                where project_id = old.id), 0),
      updated_at = now()
  where workspace_id = old.workspace_id;
  return old;
end $$;

drop trigger if exists projects_release_storage on public.projects;
create trigger projects_release_storage before delete on public.projects
  for each row execute function public.release_project_storage();

-- Counters for the workspaces and files that existed before this migration (once: later runs
-- find the rows).
insert into public.workspace_storage (workspace_id, bytes)
select w.id, coalesce((select sum(f.size_bytes) from public.files f
                       join public.projects p on p.id = f.project_id
                       where p.workspace_id = w.id), 0)
from public.workspaces w
on conflict (workspace_id) do nothing;

-- The plan that governs what user p_user pays for: a subscription that is active or trialing;
-- past_due within 7 days of past_due_since (the grace period); canceled or unpaid until the
-- end of the period already paid for. Otherwise the free plan. The best plan wins if several.
create or replace function public.billing_plan_of(p_user uuid)
returns table (slug text, name text, limits jsonb, features jsonb, status text,
               current_period_end timestamptz, grace_until timestamptz,
               cancel_at_period_end boolean)
language sql stable security definer set search_path = '' as $$
  select coalesce(paid.slug, free.slug), coalesce(paid.name, free.name),
         coalesce(paid.limits, free.limits), coalesce(paid.features, free.features),
         paid.status, paid.current_period_end, paid.grace_until, paid.cancel_at_period_end
  from public.subscription_plans free
  left join lateral (
    select sp.slug, sp.name, sp.limits, sp.features, s.status, s.current_period_end,
           case when s.status = 'past_due'
                then coalesce(s.past_due_since, s.updated_at) + interval '7 days' end
             as grace_until,
           coalesce(s.cancel_at_period_end, false) as cancel_at_period_end
    from public.subscriptions s
    join public.customers c on c.id = s.customer_id
    join public.subscription_plans sp on sp.id = s.plan_id
    where c.user_id = p_user
      and (s.status in ('active', 'trialing')
           or (s.status = 'past_due'
               and coalesce(s.past_due_since, s.updated_at) + interval '7 days' > now())
           or (s.status in ('canceled', 'unpaid') and s.current_period_end > now()))
    order by sp.sort_order desc, s.current_period_end desc
    limit 1
  ) paid on true
  where free.slug = 'free'
$$;

-- How much of one resource user p_owner's workspaces use (this UTC calendar month where the
-- limit is monthly). ai_tokens counts recorded usage plus the reservations of AI work still
-- running (younger than p_stale_s: older ones belong to a dead process); ai_tokens_recorded
-- only the recorded usage. Only the asked resource is computed.
create or replace function public.billing_used(
  p_owner uuid, p_resource text, p_stale_s float8 default 900)
returns bigint language plpgsql stable security definer set search_path = '' as $$
declare
  month_start timestamptz := date_trunc('month', now() at time zone 'utc') at time zone 'utc';
  found bigint;
begin
  if p_resource = 'projects' then
    select count(*) into found from public.projects p
    join public.workspaces w on w.id = p.workspace_id where w.owner_id = p_owner;
  elsif p_resource = 'storage_bytes' then
    select coalesce(sum(s.bytes), 0)::bigint into found from public.workspace_storage s
    join public.workspaces w on w.id = s.workspace_id where w.owner_id = p_owner;
  elsif p_resource = 'executions' then
    select count(*) into found from public.code_executions e
    join public.projects p on p.id = e.project_id
    join public.workspaces w on w.id = p.workspace_id
    where w.owner_id = p_owner and e.created_at >= month_start;
  elsif p_resource in ('ai_tokens', 'ai_tokens_recorded') then
    select coalesce(sum(u.amount), 0)::bigint into found from public.usage_records u
    join public.workspaces w on w.id = u.workspace_id
    where w.owner_id = p_owner and u.resource_type = 'ai_tokens'
      and u.recorded_at >= month_start;
    if p_resource = 'ai_tokens' then
      found := found + (
        select coalesce(sum(j.reserved_tokens), 0)::bigint from public.ai_jobs j
        join public.projects p on p.id = j.project_id
        join public.workspaces w on w.id = p.workspace_id
        where w.owner_id = p_owner and j.status in ('pending', 'running')
          and j.created_at > now() - make_interval(secs => p_stale_s));
    end if;
  else
    raise exception 'unknown billing resource %', p_resource
      using errcode = 'invalid_parameter_value';
  end if;
  return found;
end $$;

-- Everything user p_owner's workspaces use, for the usage endpoint.
create or replace function public.billing_usage_of(p_owner uuid, p_stale_s float8 default 900)
returns table (projects bigint, storage_bytes bigint, executions bigint, ai_tokens bigint,
               ai_tokens_recorded bigint)
language sql stable security definer set search_path = '' as $$
  select public.billing_used(p_owner, 'projects'), public.billing_used(p_owner, 'storage_bytes'),
         public.billing_used(p_owner, 'executions'),
         public.billing_used(p_owner, 'ai_tokens', p_stale_s),
         public.billing_used(p_owner, 'ai_tokens_recorded')
$$;

-- Takes p_amount of p_resource for the payer of workspace p_workspace, in the caller's
-- transaction, or raises SQLSTATE BL402 (detail: JSON resource, limit, used, plan) when it
-- would go over the plan. A per-payer advisory lock held to the end of the transaction
-- serialises every check of one payer, and each statement below reads after the lock, so
-- concurrent requests at the edge cannot both pass: the caller inserts the resource (or the
-- reservation) in the same transaction. Resources: projects, members, executions,
-- storage_bytes, ai_tokens. Returns the payer's id.
create or replace function public.billing_take(
  p_workspace uuid, p_resource text, p_amount bigint, p_stale_s float8 default 900)
returns uuid language plpgsql volatile security definer set search_path = '' as $$
declare
  payer uuid;
  plan record;
  lim bigint;
  used bigint;
begin
  select owner_id into payer from public.workspaces where id = p_workspace;
  if payer is null then
    raise exception 'no such workspace' using errcode = 'foreign_key_violation';
  end if;
  -- Called by a user (RLS-style claims set, or through an RPC gateway): only for a workspace
  -- they work in, so nobody probes another workspace's payer or usage.
  if auth.role() = 'authenticated' and not public.is_workspace_member(p_workspace, 'member') then
    raise exception 'not a member of this workspace' using errcode = 'insufficient_privilege';
  end if;
  perform pg_advisory_xact_lock(hashtextextended('billing:' || payer::text, 0));
  select * into plan from public.billing_plan_of(payer);
  lim := case p_resource
    when 'storage_bytes' then
      case when (plan.limits ->> 'storage_gb') is null then null
           else floor((plan.limits ->> 'storage_gb')::numeric * 1073741824)::bigint end
    else (plan.limits ->> p_resource)::bigint end;
  if lim is null or lim < 0 then
    return payer;
  end if;
  if p_resource = 'members' then
    select count(*) into used from public.workspace_members where workspace_id = p_workspace;
  else
    used := public.billing_used(payer, p_resource, p_stale_s);
  end if;
  if used + p_amount > lim then
    raise exception 'plan_limit_reached'
      using errcode = 'BL402',
            detail = json_build_object('resource', p_resource, 'limit', lim, 'used', used,
                                       'plan', plan.slug)::text;
  end if;
  return payer;
end $$;

revoke all on function public.billing_take(uuid, text, bigint, float8) from public;
grant execute on function public.billing_take(uuid, text, bigint, float8) to authenticated, service_role;
revoke all on function public.billing_used(uuid, text, float8) from public;
grant execute on function public.billing_used(uuid, text, float8) to service_role;
revoke all on function public.billing_usage_of(uuid, float8) from public;
grant execute on function public.billing_usage_of(uuid, float8) to service_role;
revoke all on function public.billing_plan_of(uuid) from public;
grant execute on function public.billing_plan_of(uuid) to service_role;
revoke all on function public.add_project_storage(uuid, bigint) from public;
revoke all on function public.create_workspace_storage() from public;
revoke all on function public.drop_workspace_storage() from public;

-- A project is writable while it is among the first `projects` (oldest first) of its payer's
-- plan: a downgrade keeps every project, the newest beyond the limit become read-only.
create or replace function public.billing_project_writable(p_project uuid)
returns boolean language sql stable security definer set search_path = '' as $$
  with target as (
    select w.owner_id from public.projects p join public.workspaces w on w.id = p.workspace_id
    where p.id = p_project),
  lim as (
    select (bp.limits ->> 'projects')::bigint as n
    from target, public.billing_plan_of(target.owner_id) bp)
  select coalesce((select n from lim) is null or (select n from lim) < 0
    or p_project in (
      select p.id from public.projects p join public.workspaces w on w.id = p.workspace_id
      where w.owner_id = (select owner_id from target)
      order by p.created_at, p.id
      limit (select n from lim)), true)
$$;
revoke all on function public.billing_project_writable(uuid) from public;
grant execute on function public.billing_project_writable(uuid) to authenticated, service_role;
