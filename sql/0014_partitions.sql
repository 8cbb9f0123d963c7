-- Monthly range partitions for analytics_events, api_logs (created_at) and usage_records
-- (recorded_at); months are UTC calendar months, partitions are named <table>_pYYYY_MM.
-- Each parent also gets a default partition <table>_default: an insert never fails because
-- the daily maintenance was late or a client clock is off; rows that land there are moved
-- into their month's partition when that partition is created, and deleted by retention.
-- Partitions get RLS enabled and no grants for anon/authenticated: users only ever reach
-- the rows through the parent, whose policies apply (Supabase's default privileges would
-- otherwise grant direct access to every new partition).

-- Locks a freshly created partition down: RLS on, no direct access for API roles.
create or replace function public.secure_partition(part regclass)
returns void
language plpgsql
set search_path = ''
as $$
begin
  execute pg_catalog.format('alter table %s enable row level security', part);
  execute pg_catalog.format('revoke all on table %s from anon, authenticated', part);
end;
$$;

-- Creates the month partitions of `parent` from the current month to +months_ahead (UTC),
-- moving any rows of those months out of the default partition; returns the names created.
create or replace function public.create_monthly_partitions(parent regclass, months_ahead int default 2)
returns setof text
language plpgsql
set search_path = ''
as $$
declare
  parent_schema text;
  parent_name text;
  key_column text;
  default_part regclass;
  month_start timestamptz;
  month_end timestamptz;
  part_name text;
  has_rows boolean;
begin
  select n.nspname, c.relname into parent_schema, parent_name
  from pg_catalog.pg_class c
  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
  where c.oid = parent;

  select a.attname into key_column
  from pg_catalog.pg_partitioned_table pt
  join pg_catalog.pg_attribute a on a.attrelid = pt.partrelid and a.attnum = pt.partattrs[0]
  where pt.partrelid = parent and pt.partstrat = 'r' and pt.partnatts = 1;
  if key_column is null then
    raise exception '% is not range-partitioned on one column', parent;
  end if;

  -- Serialise concurrent callers for this parent until the end of the transaction.
  perform pg_catalog.pg_advisory_xact_lock(parent::oid::bigint);

  select i.inhrelid::regclass into default_part
  from pg_catalog.pg_inherits i
  join pg_catalog.pg_class c on c.oid = i.inhrelid
  where i.inhparent = parent and pg_catalog.pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT';

  for i in 0..greatest(months_ahead, 0) loop
    month_start := (pg_catalog.date_trunc('month', pg_catalog.now() at time zone 'UTC')
                    + pg_catalog.make_interval(months => i)) at time zone 'UTC';
    month_end := (pg_catalog.date_trunc('month', pg_catalog.now() at time zone 'UTC')
                  + pg_catalog.make_interval(months => i + 1)) at time zone 'UTC';
    part_name := parent_name || '_p' || pg_catalog.to_char(month_start at time zone 'UTC', 'YYYY_MM');
    if pg_catalog.to_regclass(pg_catalog.format('%I.%I', parent_schema, part_name)) is not null then
      continue;
    end if;

    has_rows := false;
    if default_part is not null then
      execute pg_catalog.format('select exists (select 1 from %s where %I >= $1 and %I < $2)',
                                default_part, key_column, key_column)
        into has_rows using month_start, month_end;
    end if;

    if has_rows then
      -- A new partition cannot be attached while the default holds rows of its range.
      execute pg_catalog.format('create table %I.%I (like %s including defaults including constraints)',
                                parent_schema, part_name, parent);
      execute pg_catalog.format(
        'with moved as (delete from %s where %I >= $1 and %I < $2 returning *) insert into %I.%I select * from moved',
        default_part, key_column, key_column, parent_schema, part_name)
        using month_start, month_end;
      execute pg_catalog.format('alter table %s attach partition %I.%I for values from (%L) to (%L)',
                                parent, parent_schema, part_name, month_start, month_end);
    else
      execute pg_catalog.format('create table %I.%I partition of %s for values from (%L) to (%L)',
                                parent_schema, part_name, parent, month_start, month_end);
    end if;
    perform public.secure_partition(pg_catalog.format('%I.%I', parent_schema, part_name)::regclass);
    return next part_name;
  end loop;
end;
$$;

-- Drops the partitions of `parent` whose whole range ends before now() - retention, and
-- deletes rows that old from its default partition; returns the names dropped.
create or replace function public.drop_old_partitions(parent regclass, retention interval default '90 days')
returns setof text
language plpgsql
set search_path = ''
as $$
declare
  cutoff timestamptz := pg_catalog.now() - retention;
  key_column text;
  part record;
  upper_bound timestamptz;
begin
  select a.attname into key_column
  from pg_catalog.pg_partitioned_table pt
  join pg_catalog.pg_attribute a on a.attrelid = pt.partrelid and a.attnum = pt.partattrs[0]
  where pt.partrelid = parent and pt.partstrat = 'r' and pt.partnatts = 1;
  if key_column is null then
    raise exception '% is not range-partitioned on one column', parent;
  end if;

  perform pg_catalog.pg_advisory_xact_lock(parent::oid::bigint);

  for part in
    select i.inhrelid::regclass as rel, c.relname as name,
           pg_catalog.pg_get_expr(c.relpartbound, c.oid) as bound
    from pg_catalog.pg_inherits i
    join pg_catalog.pg_class c on c.oid = i.inhrelid
    where i.inhparent = parent
    order by c.relname
  loop
    if part.bound = 'DEFAULT' then
      execute pg_catalog.format('delete from %s where %I < $1', part.rel, key_column) using cutoff;
      continue;
    end if;
    upper_bound := pg_catalog.substring(part.bound, 'TO \(''([^'']+)''\)')::timestamptz;
    if upper_bound is not null and upper_bound <= cutoff then
      execute pg_catalog.format('drop table %s', part.rel);
      return next part.name::text;
    end if;
  end loop;
end;
$$;

revoke all on function public.secure_partition(regclass) from public;
revoke all on function public.create_monthly_partitions(regclass, int) from public;
revoke all on function public.drop_old_partitions(regclass, interval) from public;

create table public.analytics_events_default partition of public.analytics_events default;
create table public.api_logs_default partition of public.api_logs default;
create table public.usage_records_default partition of public.usage_records default;
select public.secure_partition('public.analytics_events_default');
select public.secure_partition('public.api_logs_default');
select public.secure_partition('public.usage_records_default');

select public.create_monthly_partitions('public.analytics_events', 2);
select public.create_monthly_partitions('public.api_logs', 2);
select public.create_monthly_partitions('public.usage_records', 2);
