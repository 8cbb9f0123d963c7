-- Extension of the seed's code_executions: what the seed's columns cannot say about a run.
-- message: why it ended the way it did ("output limit exceeded", "infrastructure: Judge0
-- queue is full"); backend: which one ran it (sandbox, judge0); file_id: the project file that
-- was run, if any; wall_time_ms beside the seed's execution_time_ms (CPU time, as Judge0's
-- "time"); finished_at: null while queued or running.
alter table public.code_executions
  add column message text,
  add column backend text,
  add column file_id uuid references public.files(id) on delete set null,
  add column wall_time_ms decimal,
  add column finished_at timestamptz;
