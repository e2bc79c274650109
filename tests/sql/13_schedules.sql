-- Recurring invoices: create_schedule's checks (every bad field named, nothing written), the
-- run dates (day 31 in short months, the merchant's time zone), the worker's sweep
-- (invoices_internal.run_due_schedules, called here directly) making each run's invoice once,
-- pause / resume (missed runs skipped) / cancel, the events, and another merchant seeing none.
-- (tests/worker/schedules.sh runs them through the worker across kill -9.)
\set SHOW_CONTEXT never
select (invoices.create_merchant('Subscriptions Oy') ->> 'id') as mid \gset
select invoices.act_as(:'mid'::uuid) ->> 'name' as acting;
-- bad input: every field named at once, no schedule written
select invoices.create_schedule(lines => '[{"description": "Plan", "unit_price": -5}]', frequency => 'yearly', every => 0,
       day_of_month => 32, start_date => current_date - 3, count => 0, due_days => 400, customer_email => 'not-an-email');
select invoices.create_schedule(lines => '[{"description": "Plan", "unit_price": 5}]', frequency => 'weekly', day_of_month => 3);
select invoices.create_schedule(lines => '[{"description": "Plan", "unit_price": 5}]', frequency => 'monthly',
       start_date => current_date + 10, end_date => current_date + 5);
select count(*) as schedules from invoices_internal.schedules;
-- monthly on day 31, from the 15th of a month whose 31st exists or not: the upcoming runs
select invoices.create_schedule(lines => '[{"description": "Hosting", "unit_price": "19.90"}]', frequency => 'monthly',
       day_of_month => 31, start_date => date '2031-01-15', currency => 'EUR', customer_email => 'ada@example.com')
       - '{id,merchant_id,created_at,updated_at,template,next_run_at}'::text[] as monthly;
select run, to_char(run_date, 'YYYY-MM-DD') as run_date from invoices.upcoming_runs order by run;
-- (ids read first: on Citus a function that reads tables must not run inside a query on one)
select id as first_id from invoices_internal.schedules where merchant_id = :'mid' \gset
select invoices.cancel_schedule(:'first_id') ->> 'status' as cancelled;
-- a schedule due today: every 7 days, 3 invoices, sent; its first run is made by the sweep
select invoices.create_schedule(lines => '[{"description": "Weekly box", "unit_price": 12}]', frequency => 'daily', every => 7,
       count => 3, due_days => 14, currency => 'EUR', customer_email => 'bo@example.com', send => true) ->> 'status' as weekly;
select id as sid from invoices_internal.schedules where status = 'active' \gset
select invoices_internal.run_due_schedules() as first_sweep;
select invoices_internal.run_due_schedules() as again_nothing;
select r.run, r.run_date = current_date as today, i.status, i.total, i.due_date - i.issue_date as due_days,
       i.metadata ->> 'schedule_run' as meta_run
  from invoices_internal.schedule_runs r
  join invoices_internal.invoices i on i.merchant_id = r.merchant_id and i.id = r.invoice_id;
select invoices_made, next_run_date - current_date as next_in_days, status from invoices.schedules where id = :'sid';
-- the worker was down for two periods: both owed invoices are made, then the schedule completes
-- (the new instant computed first: Citus refuses a stable expression over a column in an UPDATE)
select next_run_at - interval '14 days' as earlier from invoices_internal.schedules where id = :'sid' \gset
update invoices_internal.schedules set start_date = start_date - 14, next_run_date = next_run_date - 14,
       next_run_at = :'earlier' where id = :'sid';
select invoices_internal.run_due_schedules() as catch_up;
select invoices_internal.run_due_schedules() as catch_up_next_sweep;
select invoices_made, status, next_run_date from invoices.schedules where id = :'sid';
select array_agg(run order by run) as runs, count(distinct invoice_id) as invoices from invoices_internal.schedule_runs where schedule_id = :'sid';
select string_agg(event, ', ' order by id) as events from invoices_internal.events
 where merchant_id = :'mid' and event like 'schedule.%';
-- pause and resume: the runs due while paused are skipped
select invoices.create_schedule(lines => '[{"description": "Daily", "unit_price": 1}]', frequency => 'daily',
       currency => 'EUR') ->> 'status' as daily;
select id as did from invoices_internal.schedules where status = 'active' order by created_at desc limit 1 \gset
select invoices.pause_schedule(:'did') ->> 'status' as paused;
select invoices.pause_schedule(:'did');
select invoices_internal.run_due_schedules() as while_paused;
update invoices_internal.schedules set start_date = start_date - 5, next_run_date = next_run_date - 5 where id = :'did';
select r ->> 'status' as status, (r ->> 'next_run_date')::date = current_date as next_run_today, r ->> 'invoices_made' as made
  from invoices.resume_schedule(:'did') r;
select next_index as runs_skipped from invoices_internal.schedules where id = :'did';
select invoices.cancel_schedule('00000000-0000-0000-0000-000000000000');
select invoices.cancel_schedule('junk');
-- the merchant's time zone: runs fall due at midnight there (Kiritimati, UTC+14: 10:00 UTC the day before)
select invoices.set_time_zone('Mars/Base');
select invoices.set_time_zone('Pacific/Kiritimati') ->> 'time_zone' as time_zone;
select to_char(run_at at time zone 'Pacific/Kiritimati', 'HH24:MI') as local, to_char(run_at at time zone 'UTC', 'HH24:MI') as utc,
       run_date - (run_at at time zone 'UTC')::date as utc_day_before
  from invoices.upcoming_runs where schedule_id = :'did' order by run limit 2;
-- another merchant sees none of it
select invoices.act_as((invoices.create_merchant('Other Oy') ->> 'id')::uuid) is not null as acting;
select (select count(*) from invoices.schedules) + (select count(*) from invoices.upcoming_runs) as visible;
\set VERBOSITY sqlstate
select invoices.pause_schedule(:'did');
\set VERBOSITY default
