-- Run times were stored from Python floats, so numeric kept their binary expansion
-- (27.391999999999999459...). The application now writes milliseconds to the microsecond
-- (what rusage measures, three decimals); this rounds the rows written before it did.
update public.code_executions
set execution_time_ms = round(execution_time_ms, 3),
    wall_time_ms = round(wall_time_ms, 3)
where scale(execution_time_ms) > 3 or scale(wall_time_ms) > 3;
