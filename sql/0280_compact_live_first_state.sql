-- Compaction from a process's live document, for a file with no stored state yet.
--
-- compact_document_live (0063) writes a live document only over the state generation the
-- process loaded, so a file that had none (a new or empty file, first edited since its
-- load) was compacted through the store: a locked transaction of two round trips and a
-- merge in a worker thread, one file at a time even in the shutdown's batches (500 such
-- rooms took 1.1 s of a restart). A null p_generation now means "nothing was stored when
-- this process loaded the file": the state is inserted if there still is none and every
-- log row of the file is one this process appended or loaded; otherwise nothing is
-- written and null is returned, as before.
create or replace function public.compact_document_live(
  p_file uuid,
  p_generation bigint,
  p_own bigint[],
  p_delete bigint[],
  p_state bytea,
  p_state_vector bytea,
  p_text text,
  p_size integer,
  p_editor uuid
) returns bigint
language plpgsql
set search_path = ''
as $$
declare
  new_generation bigint;
begin
  -- persistence/documents.py LOCK_FILE: the lock of every writer of this file's state.
  perform pg_advisory_xact_lock(hashtextextended('doc:' || p_file::text, 0));
  -- The statements below take their snapshots after the lock (a volatile function under
  -- read committed), so they see whatever the previous holder committed.
  if p_generation is null then
    insert into public.document_states (file_id, state, state_vector, generation)
    select p_file, p_state, p_state_vector, 1
     where exists (select 1 from public.files f where f.id = p_file)
       and not exists (
         select 1 from public.document_updates u
         where u.file_id = p_file and u.id <> all(p_own)
       )
    on conflict (file_id) do nothing
    returning generation into new_generation;
  else
    update public.document_states
       set state = p_state, state_vector = p_state_vector, updated_at = now(),
           generation = generation + 1
     where file_id = p_file
       and generation = p_generation
       and not exists (
         select 1 from public.document_updates u
         where u.file_id = p_file and u.id <> all(p_own)
       )
    returning generation into new_generation;
  end if;
  if new_generation is null then
    return null;
  end if;
  update public.files
     set content = p_text, size_bytes = p_size, updated_at = now(),
         updated_by = coalesce(p_editor, updated_by)
   where id = p_file and content is distinct from p_text;
  -- Only the rows the written state holds: rows appended since stay for the next one.
  delete from public.document_updates where id = any(p_delete);
  return new_generation;
end;
$$;

revoke all on function public.compact_document_live(
  uuid, bigint, bigint[], bigint[], bytea, bytea, text, integer, uuid
) from public;
