-- The monthly AI allowance, checked and taken atomically. Before a reply starts, the chat
-- hub takes a per-user transaction-scoped advisory lock, counts what is already committed
-- (this UTC month's ai_tokens usage records plus the reservations of the user's chat jobs
-- still pending or running) and inserts its pending job with a reservation (the prompt's
-- estimated tokens plus the reply's output cap) in the same transaction. Two requests at
-- the same moment, on any process, therefore cannot both pass on the same remaining
-- allowance. A job's reservation stops counting when it completes, fails or is cancelled
-- (its real usage is recorded in that same transaction) or when it is older than the
-- hub's stale-job limit (its process died), so nothing has to be released by hand.
alter table public.ai_jobs
  add column reserved_tokens integer not null default 0 check (reserved_tokens >= 0);

create index ai_jobs_active_chat_by_user
  on public.ai_jobs (user_id)
  where job_type = 'chat' and status in ('pending', 'running');
