"""SMS through a Twilio-compatible REST API (Twilio, or a provider speaking its dialect).

``POST {base}/2010-04-01/Accounts/{sid}/Messages.json``, form-encoded (``To``, ``From`` or
``MessagingServiceSid``, ``Body``, optionally ``StatusCallback``), HTTP Basic auth with the
account SID and auth token. ``201`` carries the message's ``sid``.

Errors carry Twilio's ``code``: an invalid or non-mobile number, or a recipient who answered
STOP, disables the contact; 429 (and code 20429) and 5xx retry; a refused login (401) is a
configuration fault and waits for it to be fixed; any other 4xx fails the message.
"""

from __future__ import annotations

import httpx

from app.channels import transport
from app.channels.base import Delivered, Failed, Message, Outcome, RetryLater
from app.contacts.models import ContactKind
from app.settings import Settings

# 21211 'To' is not a valid number, 21214 'To' cannot be reached, 21610 the recipient
# answered STOP, 21614 'To' is not a mobile number: the number is dead or unwilling.
DISABLING_CODES = frozenset({21211, 21214, 21610, 21614})
RETRY_CODES = frozenset({20429, 20500, 20503})


def text_of(message: Message) -> str:
    """The SMS text: the message and its link (no subject: every character costs)."""
    if message.link and message.link not in message.body:
        return f"{message.body.rstrip()} {message.link}"
    return message.body


class SmsChannel:
    kind = ContactKind.phone.value

    def __init__(self, settings: Settings) -> None:
        if not settings.sms_account_sid or settings.sms_auth_token is None:
            raise ValueError("the SMS channel needs KERBSIDE_SMS_ACCOUNT_SID and _AUTH_TOKEN")
        if not settings.sms_from and not settings.sms_messaging_service_sid:
            raise ValueError(
                "the SMS channel needs KERBSIDE_SMS_FROM or KERBSIDE_SMS_MESSAGING_SERVICE_SID"
            )
        sid = settings.sms_account_sid
        self._url = f"{settings.sms_base_url}/2010-04-01/Accounts/{sid}/Messages.json"
        self._auth = httpx.BasicAuth(sid, settings.sms_auth_token.get_secret_value())
        self._sender = (
            {"MessagingServiceSid": settings.sms_messaging_service_sid}
            if settings.sms_messaging_service_sid
            else {"From": settings.sms_from or ""}
        )
        self._callback = settings.sms_status_callback_url
        self._client = transport.client(settings)

    def form(self, message: Message) -> dict[str, str]:
        form = {"To": message.address, **self._sender, "Body": text_of(message)}
        if self._callback:
            form["StatusCallback"] = self._callback
        return form

    async def deliver(self, message: Message) -> Outcome:
        try:
            response = await self._client.post(self._url, data=self.form(message), auth=self._auth)
        except httpx.HTTPError as error:
            return RetryLater(f"sms {transport.describe(error)}")
        return outcome_of(response)

    async def close(self) -> None:
        await self._client.aclose()


def outcome_of(response: httpx.Response) -> Outcome:
    status = response.status_code
    answer = transport.json_object(response)
    if status in {200, 201}:
        sid = answer.get("sid")
        return Delivered(provider_id=sid if isinstance(sid, str) else None)
    code = answer.get("code")
    code = code if isinstance(code, int) else None
    reason = f"sms {status}" + (f" code {code}" if code is not None else "")
    if code in DISABLING_CODES:
        return Failed(reason, disable_contact=True)
    if status == 429 or status >= 500 or code in RETRY_CODES:
        return RetryLater(reason, after=transport.retry_after(response))
    if status == 401:
        return RetryLater(reason + ": credentials refused")
    return Failed(reason)
