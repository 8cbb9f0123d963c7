-- Files larger than text (the seed's files.storage_path): a file whose bytes are a
-- content-addressed object ('sha256/<2>/<64 hex>', storage/objects.py) has no text and no
-- CRDT. The document hub's compaction writes files.content by file id; a compaction of a
-- room still loaded when its file became an object must not bring text back. So an update
-- that leaves storage_path set keeps content null, whoever makes it; an update that clears
-- storage_path (the object becomes a text document again) passes untouched.
create function public.keep_stored_object_textless() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if new.storage_path is not null and new.content is not null then
    new.content := null;
    new.size_bytes := old.size_bytes;
  end if;
  return new;
end;
$$;

create trigger files_stored_object_textless
  before update of content on public.files
  for each row
  when (new.storage_path is not null and new.content is not null)
  execute function public.keep_stored_object_textless();

-- Objects still referenced (the garbage collector's question), without a scan of files.
create index idx_files_storage_path on public.files (storage_path) where storage_path is not null;

-- Nor does a stored object get CRDT state: a room still loaded when its file became an
-- object is compacted when it unloads, and that state must not come back as the text
-- of the file if it becomes a document again.
create function public.skip_state_of_stored_object() returns trigger
language plpgsql
set search_path = ''
as $$
begin
  if exists (select 1 from public.files where id = new.file_id and storage_path is not null)
  then
    return null;
  end if;
  return new;
end;
$$;

create trigger document_states_not_for_stored_objects
  before insert or update on public.document_states
  for each row execute function public.skip_state_of_stored_object();
