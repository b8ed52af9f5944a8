"""A fake Twilio Messages API: Basic auth, form fields, Twilio's error codes."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass, field
from urllib.parse import parse_qs

from tests.fakes.http import Received, Reply

ACCOUNT_SID = "AC" + "0" * 32
AUTH_TOKEN = "test-auth-token-0123456789abcdef"
SENDER = "+3197010000000"
INVALID_NUMBER = "+3100000000"  # code 21211
UNSUBSCRIBED = "+31612000000"  # answered STOP: code 21610


def twilio_error(status: int, code: int, message: str) -> Reply:
    body = {
        "code": code,
        "message": message,
        "more_info": f"https://www.twilio.com/docs/errors/{code}",
        "status": status,
    }
    return Reply.json(status, json.dumps(body))


@dataclass
class FakeTwilio:
    sent: list[dict[str, str]] = field(default_factory=list)
    # Every account it knows (SID -> auth token); ``by_account`` records whose each message was.
    accounts: dict[str, str] = field(default_factory=lambda: {ACCOUNT_SID: AUTH_TOKEN})
    by_account: list[str] = field(default_factory=list)

    def __call__(self, request: Received) -> Reply:
        found = re.fullmatch(
            r"/2010-04-01/Accounts/(AC[0-9a-fA-F]{32})/Messages\.json", request.path
        )
        if found is None or found.group(1) not in self.accounts:
            return twilio_error(404, 20404, "The requested resource was not found")
        sid = found.group(1)
        expected = base64.b64encode(f"{sid}:{self.accounts[sid]}".encode()).decode()
        if request.headers.get("authorization") != f"Basic {expected}":
            return twilio_error(401, 20003, "Authenticate")
        if request.headers.get("content-type") != "application/x-www-form-urlencoded":
            return twilio_error(400, 21000, "form-encoded body expected")
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        if not form.get("Body") or not (form.get("From") or form.get("MessagingServiceSid")):
            return twilio_error(400, 21602, "Message body or sender is required")
        if form.get("To") == INVALID_NUMBER:
            return twilio_error(400, 21211, "The 'To' number is not a valid phone number.")
        if form.get("To") == UNSUBSCRIBED:
            return twilio_error(400, 21610, "Attempt to send to unsubscribed recipient")
        self.sent.append(form)
        self.by_account.append(sid)
        message_sid = f"SM{len(self.sent):032x}"
        return Reply.json(
            201,
            json.dumps(
                {
                    "sid": message_sid,
                    "status": "queued",
                    "to": form["To"],
                    "from": form.get("From"),
                    "body": form["Body"],
                    "account_sid": sid,
                    "error_code": None,
                }
            ),
        )
