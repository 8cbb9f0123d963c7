-- Password sign-ups used to set auth.users.email_confirmed_at at once although no mail
-- ever confirmed the address; an OAuth sign-in with a provider-verified email then linked
-- to such an account (someone who signed up with another person's address got that
-- person's later Google/GitHub sign-ins). Sign-ups now leave it null (persistence/
-- accounts.py); this clears it on the accounts made that way: a password, the
-- confirmation stamped in the inserting statement itself (= created_at), no app metadata
-- (what a provider's sign-up or Supabase's own auth writes) and no provider connected.
update auth.users u
set email_confirmed_at = null
where u.encrypted_password is not null
  and u.email_confirmed_at = u.created_at
  and u.raw_app_meta_data = '{}'::jsonb
  and not exists (select 1 from public.oauth_connections c where c.user_id = u.id);
