"""A real SMTP server (aiosmtpd) for the e-mail tests: requires AUTH (user mailer, password
s3cret) and stores every accepted message as DIR/<n>.eml. Every AUTH attempt is logged to
DIR/auth.log as "<login> tls=<yes|no> ok=<yes|no>", so a test can tell that credentials
arrived inside TLS, or never arrived.

    python smtp_relay.py PORT DIR                      plain SMTP, AUTH allowed without TLS
    python smtp_relay.py PORT DIR smtps CERT KEY       TLS from the first byte (port 465 style)
    python smtp_relay.py PORT DIR starttls CERT KEY    STARTTLS required before anything else,
                                                       AUTH only inside TLS

Its behaviour comes from DIR/mode, read per transaction: "ok" accepts, "tempfail" answers 451
to the message, "reject" answers 550 to the recipient.
"""
import os
import ssl
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, directory = int(sys.argv[1]), sys.argv[2]
tls = sys.argv[3] if len(sys.argv) > 3 else "plain"
os.makedirs(directory, exist_ok=True)


def mode():
    try:
        with open(os.path.join(directory, "mode")) as f:
            return f.read().strip() or "ok"
    except FileNotFoundError:
        return "ok"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and auth_data.password == b"s3cret"
    transport = getattr(server, "transport", None)
    encrypted = transport is not None and transport.get_extra_info("ssl_object") is not None
    login = auth_data.login.decode(errors="replace") if isinstance(auth_data, LoginPassword) else "?"
    with open(os.path.join(directory, "auth.log"), "a") as f:
        f.write(f"{login} tls={'yes' if encrypted else 'no'} ok={'yes' if ok else 'no'}\n")
    # handled=False: aiosmtpd answers a failure with 535 itself (handled=True would leave the
    # client waiting for an answer that never comes)
    return AuthResult(success=ok, handled=False)


class Handler:
    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if mode() == "reject":
            return "550 5.1.1 no such user here"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        if mode() == "tempfail":
            with open(os.path.join(directory, "tempfails"), "a") as f:
                f.write("x\n")
            return "451 4.3.0 try again later"
        n = len([f for f in os.listdir(directory) if f.endswith(".eml")]) + 1
        path = os.path.join(directory, f"{n:04d}.eml")
        with open(path + ".tmp", "wb") as f:
            f.write(b"X-Envelope-From: " + envelope.mail_from.encode() + b"\r\n")
            f.write(b"X-Envelope-To: " + ",".join(envelope.rcpt_tos).encode() + b"\r\n")
            f.write(envelope.original_content)
        os.rename(path + ".tmp", path)
        return f"250 2.0.0 queued as {n:04d}"


kwargs = dict(hostname="127.0.0.1", port=port, authenticator=authenticator, auth_required=True)
if tls == "plain":
    kwargs.update(auth_require_tls=False)
elif tls in ("smtps", "starttls"):
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(sys.argv[4], sys.argv[5])
    if tls == "smtps":
        # the whole session is TLS; aiosmtpd's auth_require_tls only knows STARTTLS sessions
        kwargs.update(ssl_context=context, auth_require_tls=False)
    else:
        kwargs.update(tls_context=context, require_starttls=True, auth_require_tls=True)
else:
    sys.exit(f"unknown mode {tls!r}: plain, smtps or starttls")

controller = Controller(Handler(), **kwargs)
controller.start()
print(f"SMTP relay ({tls}) on 127.0.0.1:{port}", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    controller.stop()
