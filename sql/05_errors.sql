-- ============================================================================================
-- invoices — errors: one raise for every error a call can meet
-- ============================================================================================
-- Every error of the API is raised here, in SQL as it is and during a PostgREST request with
-- the HTTP status and JSON body of docs/http.md (the one error -> SQLSTATE -> HTTP table is
-- domain::error). Everything after this file raises through it.
--
-- Needs: nothing of the files before
-- Provides (internal): raise(), raise_error()

-- --------------------------------------------------------------------------------------------
-- Errors: one raise for every error a request can meet
-- --------------------------------------------------------------------------------------------
-- In SQL the error is raised as is. During a PostgREST request (request.method is set) it is
-- raised as PostgREST's PGRST error, which carries the HTTP status (http_status(code): 400
-- validation, 401 no/bad key, 403 scope, 404 not found, 409 state conflict, 429 rate limit)
-- and the X-RateLimit-* headers; details stays the JSON naming each bad field.
create function invoices_internal.raise(code text, message text, detail text default null,
                                        hint text default null) returns void
language plpgsql
as $$
begin
  if coalesce(current_setting('request.method', true), '') <> '' then
    raise sqlstate 'PGRST' using
      message = jsonb_build_object('code', code, 'message', message, 'details', detail, 'hint', hint)::text,
      detail = jsonb_build_object(
        'status', invoices_internal.http_status(code),
        'headers', coalesce(nullif(current_setting('invoices.response_headers', true), '')::jsonb, '{}'))::text;
  end if;
  if detail is not null and hint is not null then
    raise exception using errcode = code, message = message, detail = detail, hint = hint;
  elsif detail is not null then
    raise exception using errcode = code, message = message, detail = detail;
  elsif hint is not null then
    raise exception using errcode = code, message = message, hint = hint;
  else
    raise exception using errcode = code, message = message;
  end if;
end
$$;

-- Raises an error returned as data by a Rust helper: {"error": {code, message, detail, hint}}.
create function invoices_internal.raise_error(result jsonb) returns void
language sql
as $$
  select invoices_internal.raise(result #>> '{error,code}', result #>> '{error,message}',
                                 result #>> '{error,detail}', result #>> '{error,hint}')
$$;
