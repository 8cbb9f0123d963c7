-- A project connected to a git repository (gitsync/): what a sync needs beside the seed's
-- git_repositories columns.

-- base_commit: the commit of the last sync (import, pull or push to the default branch),
--   the common ancestor of the next three-way merge.
-- auth_source: how git authenticates ('none': public; 'token': a token given when
--   connecting, encrypted in the application with its key id, never returned;
--   'oauth': the connecting user's OAuth connection to the provider).
-- credentials_username: the user name sent with the token (not secret).
-- webhook_secret_encrypted: the secret of the push webhook (HMAC key for GitHub and
--   Bitbucket, the token GitLab sends), encrypted like the credentials.
-- connected_by: who connected it (whose OAuth token pulls when auth_source = 'oauth').
-- last_error: {code, message, files?} of the last failed sync, null once one succeeds.
alter table public.git_repositories
  add column base_commit text,
  add column auth_source text not null default 'none'
    check (auth_source in ('none', 'token', 'oauth')),
  add column credentials_encrypted text,
  add column credentials_username text,
  add column webhook_secret_encrypted text,
  add column connected_by uuid references public.users(id) on delete set null,
  add column last_error jsonb;

-- The encrypted columns stay under git_repositories' policies (members of the project);
-- they hold AES-GCM ciphertext bound to the row (the key is not in the database) and the
-- API never returns them.

-- The tree of base_commit, one row per entry (blobs, symlinks, submodules): the "base" of
-- a pull's three-way comparison even when the cached repository is gone or the remote was
-- force-pushed. in_project: the entry became a project file (false: skipped at import,
-- e.g. a symlink or a refused path; such entries are never deleted by a push).
-- storage_key: the object it became when it was binary or large.
create table public.git_repository_files (
  repository_id uuid not null references public.git_repositories(id) on delete cascade,
  path text not null,
  blob_sha text not null,
  mode text not null,
  in_project boolean not null,
  storage_key text,
  primary key (repository_id, path)
);

-- Written and read by the sync jobs only (as the service).
alter table public.git_repository_files enable row level security;
create policy git_repository_files_service on public.git_repository_files
  for all to service_role using (true) with check (true);
revoke all on table public.git_repository_files from anon, authenticated;
grant all on table public.git_repository_files to service_role;

-- webhook_logs.event_id: the provider's delivery id (GitHub X-GitHub-Delivery, GitLab
-- X-Gitlab-Event-UUID, Bitbucket X-Request-UUID): a redelivery finds its row instead of
-- adding one. The same column and index as the Stripe receiver's (written idempotently so
-- the two migrations can land in either order).
alter table public.webhook_logs add column if not exists event_id text;
create unique index if not exists webhook_logs_provider_event
  on public.webhook_logs (provider, event_id) where event_id is not null;
