"""An SMTP server on loopback that only speaks TLS and only accepts authenticated senders, for
Latchkey's mail tests (tests/integration/mail.rs). Run with Debian's /usr/bin/python3, which has
python3-aiosmtpd.

    smtp_tls_server.py (starttls|smtps) PORT CERT KEY MAILDIR READY_FILE

starttls: plain SMTP that refuses everything but EHLO/STARTTLS/QUIT before STARTTLS.
smtps:    implicit TLS from the first byte.
Either way AUTH (PLAIN or LOGIN) must succeed, as user `mailer` with password `s3cret`, before
MAIL is accepted. Accepted messages go to MAILDIR (aiosmtpd's Mailbox handler). READY_FILE is
created once the server listens; the server then runs until killed.
"""

import ssl
import sys
import threading
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword

USER = b"mailer"
PASSWORD = b"s3cret"


def authenticator(server, session, envelope, mechanism, auth_data):
    ok = (
        isinstance(auth_data, LoginPassword)
        and auth_data.login == USER
        and auth_data.password == PASSWORD
    )
    # handled=False: aiosmtpd itself answers 535 to a refusal.
    return AuthResult(success=ok, handled=False, auth_data=auth_data)


def main():
    mode, port, cert, key, maildir, ready = sys.argv[1:]
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    common = dict(
        hostname="127.0.0.1",
        port=int(port),
        authenticator=authenticator,
        auth_required=True,
    )
    if mode == "starttls":
        controller = Controller(
            Mailbox(maildir), tls_context=context, require_starttls=True, **common
        )
    elif mode == "smtps":
        # aiosmtpd only counts STARTTLS as TLS for AUTH; here the whole connection is TLS.
        controller = Controller(
            Mailbox(maildir), ssl_context=context, auth_require_tls=False, **common
        )
    else:
        sys.exit(f"unknown mode {mode!r}")
    controller.start()
    Path(ready).touch()
    threading.Event().wait()


if __name__ == "__main__":
    main()
