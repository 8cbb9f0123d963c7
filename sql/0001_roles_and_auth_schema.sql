-- Roles and a Supabase-compatible auth schema.
-- On Supabase the roles, the auth schema, auth.users and auth.uid()/jwt()/role() already
-- exist and belong to Supabase; everything here is created only when absent, so the same
-- migration runs on Supabase and on plain PostgreSQL.

-- gen_random_uuid() is built into PostgreSQL 13+, so no extension is needed.

-- Roles are cluster-wide: another database on the same server may create them at the same
-- moment, so a duplicate is not an error.
do $$
begin
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'anon') then
    begin
      create role anon nologin noinherit;
    exception when duplicate_object or unique_violation then null;
    end;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'authenticated') then
    begin
      create role authenticated nologin noinherit;
    exception when duplicate_object or unique_violation then null;
    end;
  end if;
  if not exists (select 1 from pg_catalog.pg_roles where rolname = 'service_role') then
    begin
      create role service_role nologin noinherit bypassrls;
    exception when duplicate_object or unique_violation then null;
    end;
  end if;
end
$$;

-- The connecting role (the service) switches to these with `set local role`.
do $$
begin
  if not pg_catalog.pg_has_role(current_user, 'authenticated', 'member') then
    execute pg_catalog.format('grant authenticated to %I', current_user);
  end if;
  if not pg_catalog.pg_has_role(current_user, 'anon', 'member') then
    execute pg_catalog.format('grant anon to %I', current_user);
  end if;
  if not pg_catalog.pg_has_role(current_user, 'service_role', 'member') then
    execute pg_catalog.format('grant service_role to %I', current_user);
  end if;
exception when insufficient_privilege then null;
end
$$;

create schema if not exists auth;

-- The columns of Supabase's auth.users that this application relies on.
create table if not exists auth.users (
  id uuid primary key default gen_random_uuid(),
  instance_id uuid,
  aud text default 'authenticated',
  role text default 'authenticated',
  email text unique,
  encrypted_password text,
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token text,
  confirmation_sent_at timestamptz,
  recovery_token text,
  recovery_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb default '{}'::jsonb,
  raw_user_meta_data jsonb default '{}'::jsonb,
  is_super_admin boolean,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  banned_until timestamptz,
  deleted_at timestamptz,
  is_anonymous boolean not null default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

-- auth.uid(): the `sub` claim of the current request, exactly as Supabase defines it.
do $$
begin
  if pg_catalog.to_regprocedure('auth.uid()') is null then
    execute $fn$
      create function auth.uid() returns uuid
      language sql stable
      as $body$
        select coalesce(
          nullif(current_setting('request.jwt.claim.sub', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
        )::uuid
      $body$
    $fn$;
  end if;
end
$$;

-- auth.role(): the `role` claim of the current request, as Supabase defines it.
do $$
begin
  if pg_catalog.to_regprocedure('auth.role()') is null then
    execute $fn$
      create function auth.role() returns text
      language sql stable
      as $body$
        select coalesce(
          nullif(current_setting('request.jwt.claim.role', true), ''),
          (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
        )::text
      $body$
    $fn$;
  end if;
end
$$;

-- auth.jwt(): all claims of the current request as jsonb, as Supabase defines it.
do $$
begin
  if pg_catalog.to_regprocedure('auth.jwt()') is null then
    execute $fn$
      create function auth.jwt() returns jsonb
      language sql stable
      as $body$
        select coalesce(
          nullif(current_setting('request.jwt.claim', true), ''),
          nullif(current_setting('request.jwt.claims', true), '')
        )::jsonb
      $body$
    $fn$;
  end if;
end
$$;
