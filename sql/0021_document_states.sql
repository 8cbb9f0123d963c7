-- The compacted CRDT state of each document (a Yjs update encoding the whole document)
-- and its state vector. files.content stays the plain text everyone else reads; this is
-- what collaborators' editors sync from. last_auto_version_at bounds automatic
-- file_versions rows to one per time bucket across all server processes.
create table public.document_states (
  file_id uuid primary key references public.files(id) on delete cascade,
  state bytea not null,
  state_vector bytea not null,
  updated_at timestamptz not null default now(),
  last_auto_version_at timestamptz
);

-- Only the service (the document hub) reads or writes CRDT states.
alter table public.document_states enable row level security;
create policy document_states_service on public.document_states
  for all to service_role using (true) with check (true);
revoke all on table public.document_states from anon, authenticated;
grant all on table public.document_states to service_role;
