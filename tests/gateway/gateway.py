"""Forward auth through real proxies: nginx (auth_request) and Caddy (forward_auth) in
front of an upstream that echoes the headers it got, portcullis deciding.

usage: gateway.py PORTCULLIS_BINARY ARTIFACT_DIR   (run.sh installs what it needs)

Through each proxy: anonymous, each credential type (session, Token, JWT, Basic), a client
smuggling its own Remote-User, a forbidden path, a permission granted by the CLI, groups, a
token revoked through the API on the very next request, CSRF on an unsafe session request;
nginx never answers 500. Then a browser sent by Caddy to the login page and back.
"""
import base64
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

BIN, ARTIFACTS = sys.argv[1], sys.argv[2]
HERE = os.path.dirname(os.path.abspath(__file__))
WORK = tempfile.mkdtemp(prefix="portcullis-gateway.")
PASSWORD = "G4teway-" + os.urandom(6).hex()
REMOTE = ["Remote-User", "Remote-User-Id", "Remote-Email", "Remote-Name", "Remote-Groups", "Remote-Auth"]
results = {"passed": 0, "failed": 0}
children = []


def check(ok, what):
    print(("PASS: " if ok else "FAIL: ") + what, flush=True)
    results["passed" if ok else "failed"] += 1


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port, seconds=20):
    deadline = time.time() + seconds
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


class Echo(http.server.BaseHTTPRequestHandler):
    """The upstream: answers what it was asked, with the headers it got."""

    def answer(self):
        body = json.dumps({"method": self.command, "path": self.path,
                           "headers": {k.lower(): v for k, v in self.headers.items()}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_DELETE = answer

    def log_message(self, *args):
        pass


def request(method, url, headers=None, body=None, form=None):
    """(status, headers, body as JSON or text) without following redirects."""
    data = None
    headers = dict(headers or {})
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    if form is not None:
        data = "&".join(f"{k}={urllib.parse.quote(v)}" for k, v in form.items()).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    opener = urllib.request.build_opener(NoRedirect)
    req = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with opener.open(req, timeout=10) as res:
            status, got, raw = res.status, res.headers, res.read()
    except urllib.error.HTTPError as e:
        status, got, raw = e.code, e.headers, e.read()
    try:
        return status, got, json.loads(raw)
    except ValueError:
        return status, got, raw.decode(errors="replace")


def portcullis(*args, env=None, check_ok=True):
    out = subprocess.run([BIN, *args], cwd=WORK, env=env or ENV, capture_output=True, text=True, timeout=60)
    if check_ok and out.returncode != 0:
        raise RuntimeError(f"portcullis {' '.join(args)}: {out.stderr}")
    return out.stdout


PC, UP, NG, CD = free_port(), free_port(), free_port(), free_port()
CONFIG = f"""
[server]
trusted_proxies = ["127.0.0.1"]
[metrics]
bind = ""
[gateway]
chain = ["session", "token", "jwt", "basic"]
login_url = "/accounts/login/"
[[gateway.rules]]
path = "/public/"
policy = "allow_any"
[[gateway.rules]]
path = "/admin/"
policy = "is_admin_user"
[[gateway.rules]]
path = "/reports/"
policy = "perm:reports.view"
[[gateway.rules]]
path = "/editors/"
policy = "group:editors"
"""
ENV = {k: v for k, v in os.environ.items() if not k.startswith("PORTCULLIS_") and k != "DATABASE_URL"}
ENV.update({"DATABASE_URL": f"sqlite://{WORK}/db.sqlite3?mode=rwc", "PORTCULLIS_CONFIG": f"{WORK}/portcullis.toml"})

NGINX = f"""
{"user root;" if os.geteuid() == 0 else ""}
worker_processes 1;
pid {WORK}/nginx.pid;
error_log {WORK}/nginx-error.log warn;
events {{ worker_connections 512; }}
http {{
  access_log off;
  client_body_temp_path {WORK}/nginx-body; proxy_temp_path {WORK}/nginx-proxy;
  fastcgi_temp_path {WORK}/nginx-fcgi; uwsgi_temp_path {WORK}/nginx-uwsgi; scgi_temp_path {WORK}/nginx-scgi;
  upstream portcullis {{ server 127.0.0.1:{PC}; keepalive 16; }}
  upstream app {{ server 127.0.0.1:{UP}; keepalive 16; }}
  server {{
    listen 127.0.0.1:{NG};
    location = /_portcullis {{
      internal;
      proxy_pass http://portcullis/authz/auth-request/;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URL $scheme://$http_host$request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
    location /accounts/ {{
      proxy_pass http://portcullis;
      proxy_set_header Host $http_host;
    }}
    location / {{
      auth_request /_portcullis;
""" + "".join(
    f"      auth_request_set $pc_{h.lower().replace('-', '_')} $upstream_http_{h.lower().replace('-', '_')};\n"
    f"      proxy_set_header {h} $pc_{h.lower().replace('-', '_')};\n" for h in REMOTE) + f"""
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_pass http://app;
    }}
  }}
}}
"""

CADDY = f"""{{
  admin off
  auto_https off
}}
http://127.0.0.1:{CD} {{
  route {{
    reverse_proxy /accounts/* 127.0.0.1:{PC}
""" + "".join(f"    request_header -{h}\n" for h in REMOTE) + f"""    forward_auth 127.0.0.1:{PC} {{
      uri /authz/forward-auth/
      copy_headers {" ".join(REMOTE)}
    }}
    reverse_proxy 127.0.0.1:{UP}
  }}
}}
"""


def start_all():
    with open(f"{WORK}/portcullis.toml", "w") as f:
        f.write(CONFIG)
    log = open(f"{WORK}/portcullis.log", "w")
    children.append(subprocess.Popen([BIN, "serve", "--bind", f"127.0.0.1:{PC}"], cwd=WORK, env=ENV,
                                     stdout=log, stderr=log))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", UP), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    with open(f"{WORK}/nginx.conf", "w") as f:
        f.write(NGINX)
    for d in ["nginx-body", "nginx-proxy", "nginx-fcgi", "nginx-uwsgi", "nginx-scgi"]:
        os.makedirs(f"{WORK}/{d}", exist_ok=True)
    children.append(subprocess.Popen(["nginx", "-p", WORK, "-c", f"{WORK}/nginx.conf", "-g", "daemon off;"],
                                     stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/nginx.log", "w")))
    with open(f"{WORK}/Caddyfile", "w") as f:
        f.write(CADDY)
    caddy_env = dict(os.environ, HOME=WORK, XDG_DATA_HOME=WORK, XDG_CONFIG_HOME=WORK)
    children.append(subprocess.Popen(["caddy", "run", "--config", f"{WORK}/Caddyfile", "--adapter", "caddyfile"],
                                     env=caddy_env, stdout=subprocess.DEVNULL, stderr=open(f"{WORK}/caddy.log", "w")))
    for name, port in [("portcullis", PC), ("nginx", NG), ("caddy", CD)]:
        if not wait_for(port):
            raise RuntimeError(f"{name} did not listen on {port}")


def credentials():
    """john (group editors): a session cookie with its CSRF token, a Token, a JWT, Basic."""
    creds = {"username": "john", "password": PASSWORD}
    direct = f"http://127.0.0.1:{PC}"
    for user in ["john", "ann"]:
        request("POST", f"{direct}/register/", body={"username": user, "password": PASSWORD})
    portcullis("addtogroup", "john", "editors")
    status, headers, _ = request("POST", f"{direct}/login/", body=creds)
    cookies = [c.split(";")[0] for c in headers.get_all("Set-Cookie")]
    csrf = next(c.split("=", 1)[1] for c in cookies if c.startswith("csrftoken="))
    token = request("POST", f"{direct}/api-token-auth/", body=creds)[2]["token"]
    access = request("POST", f"{direct}/api/token/", body=creds)[2]["access"]
    basic = base64.b64encode(f"john:{PASSWORD}".encode()).decode()
    return {
        "session": {"Cookie": "; ".join(cookies)},
        "token": {"Authorization": f"Token {token}"},
        "jwt": {"Authorization": f"Bearer {access}"},
        "basic": {"Authorization": f"Basic {basic}"},
    }, csrf


def through(proxy, port, creds, csrf, statuses):
    base = f"http://127.0.0.1:{port}"

    def get(path, headers=None, method="GET"):
        status, _, body = request(method, base + path, headers=headers)
        statuses.append((proxy, status))
        return status, body

    status, _ = get("/orders/")
    check(status == 401, f"{proxy}: anonymous -> 401 ({status})")
    for kind, headers in creds.items():
        status, body = get("/orders/", headers)
        seen = body.get("headers", {}) if isinstance(body, dict) else {}
        check(status == 200 and seen.get("remote-user") == "john" and seen.get("remote-auth") == kind,
              f"{proxy}: {kind} -> 200, upstream saw Remote-User john, Remote-Auth {kind} ({status} {seen.get('remote-auth')})")
    seen = get("/orders/", creds["token"])[1]["headers"]
    check(seen.get("remote-groups") == "editors" and seen.get("remote-user-id", "").isdigit(),
          f"{proxy}: Remote-Groups {seen.get('remote-groups')!r}, Remote-User-Id {seen.get('remote-user-id')!r}")
    status, body = get("/public/x", {"Remote-User": "admin", "Remote-Auth": "session"})
    seen = body["headers"] if status == 200 else {}
    check(status == 200 and not seen.get("remote-user") and not seen.get("remote-auth"),
          f"{proxy}: a smuggled Remote-User never reaches the upstream on an allow_any path ({seen.get('remote-user')!r})")
    status, body = get("/orders/", {**creds["token"], "Remote-User": "admin"})
    check(status == 200 and body["headers"].get("remote-user") == "john",
          f"{proxy}: a smuggled Remote-User is replaced by the real one ({body['headers'].get('remote-user')!r})")
    check(get("/admin/", creds["token"])[0] == 403, f"{proxy}: a forbidden path -> 403")
    check(get("/editors/", creds["token"])[0] == 200, f"{proxy}: group:editors lets john in")
    status, _ = get("/orders/", creds["session"], method="POST")
    check(status == 403, f"{proxy}: an unsafe session request without the CSRF token -> 403 ({status})")
    status, _ = get("/orders/", {**creds["session"], "X-CSRFToken": csrf, "Origin": base}, method="POST")
    check(status == 200, f"{proxy}: ...and with it -> 200 ({status})")
    for odd in ["Token", "Bearer not.a.jwt", "Basic !!!", "Token " + "x" * 40]:
        status, _ = get("/orders/", {"Authorization": odd})
        check(status == 401, f"{proxy}: Authorization {odd[:12]!r}... -> 401 ({status})")


def main():
    start_all()
    creds, csrf = credentials()
    statuses = []
    for proxy, port in [("nginx", NG), ("caddy", CD)]:
        through(proxy, port, creds, csrf, statuses)
    # A permission granted by the CLI counts at the next decision, through both proxies.
    for proxy, port in [("nginx", NG), ("caddy", CD)]:
        check(request("GET", f"http://127.0.0.1:{port}/reports/1", creds["token"])[0] == 403,
              f"{proxy}: /reports/ needs reports.view")
    portcullis("grant", "john", "reports.view")
    for proxy, port in [("nginx", NG), ("caddy", CD)]:
        check(request("GET", f"http://127.0.0.1:{port}/reports/1", creds["token"])[0] == 200,
              f"{proxy}: granted by the CLI -> 200")
    # A token revoked through the API is refused by the very next request.
    direct = f"http://127.0.0.1:{PC}"
    listed = request("GET", f"{direct}/tokens/", creds["token"])[2]
    for proxy, port in [("nginx", NG), ("caddy", CD)]:
        token = request("POST", f"{direct}/api-token-auth/", body={"username": "ann", "password": PASSWORD})[2]["token"]
        auth = {"Authorization": f"Token {token}"}
        check(request("GET", f"http://127.0.0.1:{port}/orders/", auth)[0] == 200, f"{proxy}: ann's token works")
        mine = request("GET", f"{direct}/tokens/", auth)[2]["results"][0]["id"]
        check(request("DELETE", f"{direct}/tokens/{mine}/", auth)[0] == 204, f"{proxy}: revoked")
        status = request("GET", f"http://127.0.0.1:{port}/orders/", auth)[0]
        statuses.append((proxy, status))
        check(status == 401, f"{proxy}: the very next request with it -> 401 ({status})")
    del listed
    # Basic failures are throttled: nginx still only ever sees 200/401/403.
    bad = {"Authorization": "Basic " + base64.b64encode(b"john:wrong").decode()}
    for _ in range(8):
        statuses.append(("nginx", request("GET", f"http://127.0.0.1:{NG}/orders/", bad)[0]))
    nginx = sorted({s for p, s in statuses if p == "nginx"})
    check(set(nginx) <= {200, 401, 403}, f"nginx answered only {nginx} (never a 500)")
    # A browser: sent to the login page by Caddy and back.
    env = dict(os.environ, APP_URL=f"http://127.0.0.1:{CD}/app/", USERNAME="ann", PASSWORD=PASSWORD,
               ARTIFACT_DIR=ARTIFACTS)
    out = subprocess.run(["node", os.path.join(HERE, "browser.mjs")], env=env, capture_output=True, text=True,
                         timeout=120)
    for line in out.stdout.splitlines():
        print("browser " + line)
    check(out.returncode == 0, "the browser flow behind Caddy")


try:
    main()
except Exception as e:  # noqa: BLE001 - report and fail
    check(False, f"the run went to the end: {e!r}")
finally:
    for child in reversed(children):
        child.terminate()
        try:
            child.wait(timeout=10)
        except subprocess.TimeoutExpired:
            child.kill()
    if results["failed"]:
        for name in ["portcullis.log", "nginx-error.log", "nginx.log", "caddy.log"]:
            path = os.path.join(WORK, name)
            if os.path.exists(path):
                with open(path) as f:
                    tail = f.read()[-3000:]
                print(f"--- {name} ---\n{tail}")
print(f"{results['passed']} passed, {results['failed']} failed")
sys.exit(1 if results["failed"] else 0)
