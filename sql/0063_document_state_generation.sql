-- Compaction from a process's live document.
--
-- A compaction used to read the stored state and every log row back and merge them, an
-- O(document) CRDT merge every few seconds per edited file, although the process that
-- appended those rows already holds their merge in memory. Each stored state now carries
-- a generation (bumped by every write of it), so a process knows whether the state it
-- loaded or last wrote is still the stored one. When it is, and every log row of the file
-- is one this process appended or loaded (all of them in its live document), the live
-- document's own encoding is the merge: compact_document_live writes it, under the same
-- per-file lock as every other writer of the state, in one statement. Otherwise it writes
-- nothing and returns null, and the caller merges what the store holds as before.
alter table public.document_states add column generation bigint not null default 0;

create function public.compact_document_live(
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
