-- Extension of the seed's ai_jobs: the conversation a chat job answers in, and at most one
-- pending/running chat job per conversation, so a second request while a reply streams is
-- refused as busy even when it reaches another server process.
alter table public.ai_jobs
  add column conversation_id uuid references public.conversations(id) on delete cascade;

create unique index ai_jobs_one_active_chat
  on public.ai_jobs (conversation_id)
  where job_type = 'chat' and status in ('pending', 'running');
