-- Extension of the seed's code_analyses: a cache of analyses keyed by what was analysed.
-- content_hash: sha-256 of the analysed text with its language and line range (see
-- ai/analysis.py), so (project, content_hash, analysis_type, model) names one result; a
-- changed file has another hash, so its old results are never served (and are deleted when
-- the new one is stored). file_id ties a result to its file (deleted with it); line_start and
-- line_end are the analysed range (null: the whole file); job_id is the ai_jobs row that
-- made it (tokens, model, duration). Expired rows are deleted by maintenance.code_analyses.
alter table public.code_analyses
  add column content_hash text,
  add column file_id uuid references public.files(id) on delete cascade,
  add column line_start integer check (line_start > 0),
  add column line_end integer check (line_end >= line_start),
  add column job_id uuid references public.ai_jobs(id) on delete set null;

-- The cache lookup and the one-result-per-key rule (model null counts as one model).
create unique index code_analyses_cache_key
  on public.code_analyses (project_id, content_hash, analysis_type, model)
  nulls not distinct
  where content_hash is not null;

create index code_analyses_file_type on public.code_analyses (file_id, analysis_type)
  where file_id is not null;

-- The AI allowance counts the reservations of every kind of AI job (chat replies, analyses,
-- edits), not only chat: the index behind that sum.
create index ai_jobs_active_by_user
  on public.ai_jobs (user_id)
  where status in ('pending', 'running');
