-- The CRDT update log of each document (collab/hub.py): every Yjs update a node accepted
-- from one of its clients, appended in group commits of a few tens of milliseconds.
-- Compaction merges a file's rows up to some id into public.document_states and deletes
-- them in the same transaction, so a file keeps only the last few seconds of rows.
create table public.document_updates (
  id bigserial primary key,
  file_id uuid not null references public.files(id) on delete cascade,
  update bytea not null,
  created_at timestamptz not null default now()
);

create index idx_document_updates_file on public.document_updates(file_id, id);

-- Only the service (the document hub) reads or writes the log: RLS on, users get no rows.
alter table public.document_updates enable row level security;
create policy document_updates_service on public.document_updates
  for all to service_role using (true) with check (true);
revoke all on table public.document_updates from anon, authenticated;
grant all on table public.document_updates to service_role;
grant usage on sequence public.document_updates_id_seq to service_role;
