"""A real SMTP server (aiosmtpd) for the e-mail tests: requires AUTH PLAIN (user mailer,
password s3cret, without TLS on loopback) and stores every accepted message as DIR/<n>.eml.

Its behaviour comes from DIR/mode, read per transaction: "ok" accepts, "tempfail" answers 451
to the message, "reject" answers 550 to the recipient.

    python smtp_relay.py PORT DIR
"""
import os
import sys
import time

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword

port, directory = int(sys.argv[1]), sys.argv[2]
os.makedirs(directory, exist_ok=True)


def mode():
    try:
        with open(os.path.join(directory, "mode")) as f:
            return f.read().strip() or "ok"
    except FileNotFoundError:
        return "ok"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = isinstance(auth_data, LoginPassword) and auth_data.login == b"mailer" and auth_data.password == b"s3cret"
    return AuthResult(success=ok)


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


controller = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=authenticator,
                        auth_required=True, auth_require_tls=False)
controller.start()
print(f"SMTP relay on 127.0.0.1:{port}", flush=True)
try:
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    controller.stop()
