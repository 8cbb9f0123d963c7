-- auth.users -> public.users profile sync (seed: sync_user_profile / on_auth_user_created).
-- Fixes: SECURITY DEFINER with `set search_path = ''` and schema-qualified names (a definer
-- function with a caller-controlled search_path can be hijacked); on insert the profile also
-- takes full_name and avatar_url from raw_user_meta_data (what Supabase sign-ups put there);
-- the trigger fires on insert and on updates of email only, so sign-ins (last_sign_in_at
-- updates) do not rewrite the profile.

-- Creates or refreshes the public profile row of an auth user.
create or replace function public.sync_user_profile()
returns trigger
language plpgsql
security definer
set search_path = ''
as $$
begin
  insert into public.users (id, email, full_name, avatar_url, created_at, updated_at)
  values (
    new.id,
    new.email,
    new.raw_user_meta_data ->> 'full_name',
    new.raw_user_meta_data ->> 'avatar_url',
    pg_catalog.now(),
    pg_catalog.now()
  )
  on conflict (id) do update
  set email = excluded.email,
      updated_at = pg_catalog.now();
  return new;
end;
$$;

revoke all on function public.sync_user_profile() from public;

drop trigger if exists on_auth_user_created on auth.users;
create trigger on_auth_user_created
  after insert or update of email on auth.users
  for each row execute function public.sync_user_profile();
