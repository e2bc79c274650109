#!/usr/bin/env bash
# The public web front: nginx on $PUBLIC_HOST:$PUBLIC_PORT in front of the PostgREST on
# $PGRST_HOST:$PGRST_PORT, run by the cluster owner from a configuration in $WEB_DIR (default
# .local: its nginx/, run/nginx.pid and log/nginx.log). Written and (re)started idempotently by
# scripts/setup.sh for the single node and by scripts/citus.sh for the cluster.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/env.sh"
WEB_DIR="${WEB_DIR:-$LOCAL_DIR}"
# /i/<slug> is the hosted invoice page (GET /rpc/hosted_invoice, as HTML), /rpc/invoice_pdf
# and /rpc/receipt_pdf answer as a PDF to a browser too, everything else is PostgREST.
mkdir -p "$WEB_DIR/nginx/tmp" "$WEB_DIR/log" "$WEB_DIR/run"
touch "$WEB_DIR/log/nginx.log"
[ "$(id -u)" = 0 ] && chown -R "$CLUSTER_OWNER" "$WEB_DIR/nginx" "$WEB_DIR/log/nginx.log"
cat > "$WEB_DIR/nginx/nginx.conf.new" <<CONF
# written by scripts/web_front.sh
worker_processes 1;
load_module /usr/lib/nginx/modules/ndk_http_module.so;
load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;
pid $WEB_DIR/run/nginx.pid;
error_log $WEB_DIR/log/nginx.log warn;
events { worker_connections 512; }
http {
  access_log off;
  client_body_temp_path $WEB_DIR/nginx/tmp/body;
  proxy_temp_path $WEB_DIR/nginx/tmp/proxy;
  fastcgi_temp_path $WEB_DIR/nginx/tmp/fastcgi;
  uwsgi_temp_path $WEB_DIR/nginx/tmp/uwsgi;
  scgi_temp_path $WEB_DIR/nginx/tmp/scgi;
  upstream postgrest { server $PGRST_HOST:$PGRST_PORT; keepalive 16; }
  server {
    listen $PUBLIC_HOST:$PUBLIC_PORT;
    proxy_http_version 1.1;
    # PostgREST answers 500 to a header that is not UTF-8 (it decodes every header before the
    # database sees the request): such a request is refused here with 400
    access_by_lua_block {
      local utf8 = [[^(?:[\\x00-\\x7F]|[\\xC2-\\xDF][\\x80-\\xBF]|\\xE0[\\xA0-\\xBF][\\x80-\\xBF]|[\\xE1-\\xEC\\xEE\\xEF][\\x80-\\xBF]{2}|\\xED[\\x80-\\x9F][\\x80-\\xBF]|\\xF0[\\x90-\\xBF][\\x80-\\xBF]{2}|[\\xF1-\\xF3][\\x80-\\xBF]{3}|\\xF4[\\x80-\\x8F][\\x80-\\xBF]{2})*\$]]
      local headers, err = ngx.req.get_headers(0, true)
      if err == "truncated" then return ngx.exit(431) end
      for name, value in pairs(headers) do
        for _, v in ipairs(type(value) == "table" and value or { value }) do
          if not ngx.re.find(v, utf8, "jo") then
            ngx.status = 400
            ngx.header["Content-Type"] = "application/json"
            ngx.say('{"code":"22021","message":"request header ' .. name:gsub('[^%w-]', '') .. ' is not valid UTF-8","details":null,"hint":"send header values as UTF-8"}')
            return ngx.exit(400)
          end
        end
      end
    }
    proxy_set_header Connection "";
    proxy_set_header Host \$host;
    proxy_set_header X-Forwarded-For \$remote_addr;
    # the client address anonymous requests are rate-limited by. A client's own X-Real-IP is
    # believed only from a trusted proxy in front (here: loopback, where the tests stand in for
    # one); from anyone else it is replaced by the peer's address.
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Real-IP;
    proxy_set_header X-Real-IP \$remote_addr;
    location ~ "^/i/([A-Za-z0-9_-]{1,64})/?\$" {
      proxy_set_header Accept "text/html";
      proxy_pass http://postgrest/rpc/hosted_invoice?slug=\$1;
    }
    # the pay button's script
    location = /widget.js {
      proxy_set_header Accept "text/javascript";
      proxy_pass http://postgrest/rpc/widget_js;
    }
    location = /rpc/invoice_pdf {
      proxy_set_header Accept "application/pdf";
      proxy_pass http://postgrest;
    }
    location = /rpc/receipt_pdf {
      proxy_set_header Accept "application/pdf";
      proxy_pass http://postgrest;
    }
    # The seed APIs (Living Invoices, Kibble, BTPay, apiforcrypto) at their documented paths:
    # every request under /api/ goes to invoices.seed_request, which routes it (domain::seeds).
    # Method, path and query travel in X-Seed-* headers (a client's own are replaced), the body
    # as text; PostgREST's own request headers are dropped, so the call is always the same.
    location /api/ {
      client_max_body_size 1m;
      client_body_buffer_size 1m;
      rewrite_by_lua_block {
        ngx.req.read_body()
        local body = ngx.req.get_body_data()
        if body == nil and ngx.req.get_body_file() ~= nil then
          ngx.status = 413
          ngx.header["Content-Type"] = "application/json"
          ngx.say('{"error":"the request body is too large"}')
          return ngx.exit(413)
        end
        local path, query = ngx.var.request_uri:match("^([^?]*)%??(.*)\$")
        local method = ngx.req.get_method()
        ngx.req.set_header("X-Seed-Method", method)
        ngx.req.set_header("X-Seed-Path", path)
        ngx.req.set_header("X-Seed-Query", query)
        for _, h in ipairs({ "Prefer", "Accept-Profile", "Content-Profile", "Range", "Range-Unit" }) do
          ngx.req.clear_header(h)
        end
        ngx.req.set_header("Content-Type", "text/plain; charset=utf-8")
        ngx.req.set_header("Accept", "application/json")
        ngx.req.set_method(ngx.HTTP_POST)
        ngx.req.set_body_data(body or "")
        ngx.req.set_uri_args("")
        -- the one answer that is not JSON (Kibble's PDF) comes from its own entry point
        if (method == "GET" or method == "HEAD") and path:match("^/api/invoices/[^/]+/pdf/?\$") then
          ngx.req.set_header("Accept", "application/pdf")
          ngx.req.set_method(ngx.HTTP_POST)
          ngx.req.set_uri("/rpc/seed_pdf", false)
          return
        end
        ngx.req.set_uri("/rpc/seed_request", false)
      }
      proxy_pass http://postgrest;
    }
    location / { proxy_pass http://postgrest; }
  }
}
CONF
nginx_pid() { cat "$WEB_DIR/run/nginx.pid" 2>/dev/null || true; }
if ! cmp -s "$WEB_DIR/nginx/nginx.conf.new" "$WEB_DIR/nginx/nginx.conf"; then
  mv "$WEB_DIR/nginx/nginx.conf.new" "$WEB_DIR/nginx/nginx.conf"
  [ -n "$(nginx_pid)" ] && kill -0 "$(nginx_pid)" 2>/dev/null && as_owner "$NGINX_BIN" -q -e "$WEB_DIR/log/nginx.log" -c "$WEB_DIR/nginx/nginx.conf" -s reload
else
  rm -f "$WEB_DIR/nginx/nginx.conf.new"
fi
if ! { [ -n "$(nginx_pid)" ] && kill -0 "$(nginx_pid)" 2>/dev/null; }; then
  log "starting nginx on $PUBLIC_URL (hosted invoice pages)"
  as_owner "$NGINX_BIN" -q -e "$WEB_DIR/log/nginx.log" -c "$WEB_DIR/nginx/nginx.conf" \
    || die "nginx did not start (log: $WEB_DIR/log/nginx.log)"
fi
