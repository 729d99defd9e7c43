"""How an alert is written for each channel type, and sent once (retries are the outbox's).

Own code rather than apprise: the delivery guarantees need what apprise does not give one call at a
time — a per-attempt outcome with a closed reason and reply code for the ledger, our idempotency
key and HMAC headers on the request, the destination allowlist checked on the resolved address
before connecting, and no logging of URLs (apprise logs its targets, and a Slack URL is a
credential). Each format is a few lines over :mod:`tapeflow.alerts.transport` and :mod:`smtplib`.

Webhook headers (``docs/alerts.md``): ``X-Tapeflow-Timestamp`` (unix seconds),
``X-Tapeflow-Signature`` = ``sha256=`` + hex HMAC-SHA256 of ``f"{timestamp}.".encode() + body``
under the channel's secret, ``Idempotency-Key`` and ``X-Tapeflow-Alert-Id``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import smtplib
import ssl
import time
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlencode

from tapeflow.alerts.alert import Alert
from tapeflow.alerts.config import Allow, Channel
from tapeflow.alerts.secrets import Secret
from tapeflow.alerts.transport import DeliveryFailure, check, post

TIMESTAMP_HEADER = "X-Tapeflow-Timestamp"
SIGNATURE_HEADER = "X-Tapeflow-Signature"
IDEMPOTENCY_HEADER = "Idempotency-Key"
ALERT_ID_HEADER = "X-Tapeflow-Alert-Id"
SMS_MAX_CHARS = 320


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    """The ``X-Tapeflow-Signature`` value of ``body`` sent at ``timestamp`` (unix seconds)."""
    return "sha256=" + hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def verify(secret: bytes, timestamp: str, body: bytes, signature: str, *, now_s: float | None = None,
           tolerance_s: float = 300.0) -> bool:
    """What a receiver checks: the signature matches and the timestamp is within ``tolerance_s``
    of now (so a captured request cannot be replayed later)."""
    now_s = time.time() if now_s is None else now_s
    try:
        fresh = abs(now_s - int(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def send(channel: Channel, alert: Alert, key: str, *, allow: Allow, timeout_s: float) -> int:
    """Send ``alert`` on ``channel`` once; returns the receiver's success code (0 for a file).

    Raises:
        DeliveryFailure: the attempt failed (reason, reply code, retryable).
    """
    timeout_s = channel.values.get("timeout_ms", timeout_s * 1000) / 1000
    sender = _SENDERS[channel.type]
    return sender(channel, alert, key, allow, timeout_s)


def _url(channel: Channel) -> str:
    url = channel.values["url"]
    return url.reveal() if isinstance(url, Secret) else str(url)


def _webhook(channel: Channel, alert: Alert, key: str, allow: Allow, timeout_s: float) -> int:
    body = alert.body()
    timestamp = str(int(time.time()))
    headers = {
        "Content-Type": "application/json", TIMESTAMP_HEADER: timestamp,
        SIGNATURE_HEADER: sign(channel.values["secret"].reveal().encode(), timestamp, body),
        IDEMPOTENCY_HEADER: key, ALERT_ID_HEADER: alert.alert_id,
    }
    return post(_url(channel), body, headers, allow=allow, timeout_s=timeout_s,
                ca_file=channel.values.get("ca_file"))


def _slack(channel: Channel, alert: Alert, key: str, allow: Allow, timeout_s: float) -> int:
    lines = [f"*{alert.text()}*",
             f"rule `{alert.rule}` · {alert.venue} {alert.symbol} · id `{alert.alert_id}`"]
    if alert.detail:
        lines.append("```" + json.dumps(alert.detail, sort_keys=True)[:2000] + "```")
    body = json.dumps({"text": alert.text(), "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]}).encode()
    headers = {"Content-Type": "application/json", IDEMPOTENCY_HEADER: key}
    return post(_url(channel), body, headers, allow=allow, timeout_s=timeout_s,
                ca_file=channel.values.get("ca_file"))


def _sms(channel: Channel, alert: Alert, key: str, allow: Allow, timeout_s: float) -> int:
    account, token = channel.values["account"].reveal(), channel.values["token"].reveal()
    auth = base64.b64encode(f"{account}:{token}".encode()).decode()
    status = 0
    # Twilio takes one recipient per request; each keeps its own key so a retry after a partial
    # send is de-duplicated by the gateway for the recipients already reached
    for index, to in enumerate(channel.values["to"]):
        form = urlencode({"From": channel.values["from"], "To": to, "Body": alert.text()[:SMS_MAX_CHARS]})
        headers = {"Content-Type": "application/x-www-form-urlencoded", "Authorization": f"Basic {auth}",
                   IDEMPOTENCY_HEADER: f"{key}-{index}", "I-Twilio-Idempotency-Token": f"{key}-{index}"}
        status = post(_url(channel), form.encode(), headers, allow=allow, timeout_s=timeout_s,
                ca_file=channel.values.get("ca_file"))
    return status


def _file(channel: Channel, alert: Alert, key: str, allow: Allow, timeout_s: float) -> int:
    line = json.dumps({**alert.payload(), "idempotency_key": key}, sort_keys=True) + "\n"
    try:
        path = Path(channel.values["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as out:
            out.write(line)
    except OSError as exc:
        raise DeliveryFailure("io_error", f"cannot append to the alerts file ({type(exc).__name__})",
                              retryable=True) from None
    return 0


def _email(channel: Channel, alert: Alert, key: str, allow: Allow, timeout_s: float) -> int:
    values = channel.values
    message = EmailMessage()
    message["Subject"] = alert.text()[:200]
    message["From"] = values["from"]
    message["To"] = ", ".join(values["to"])
    message["Message-ID"] = f"<{key}@tapeflow>"  # one id per alert and channel: mail clients de-duplicate
    message[ALERT_ID_HEADER] = alert.alert_id
    message.set_content(json.dumps(alert.payload(), indent=2, sort_keys=True))
    port = values.get("port", 587)
    # the SMTP host goes through the same allowlist as every URL, and is connected to as checked
    target = check(f"http://{values['host']}:{port}/", allow)
    try:
        with smtplib.SMTP(target.address, port, timeout=timeout_s) as smtp:
            if values.get("starttls", True):
                smtp._host = values["host"]  # type: ignore[attr-defined]  # the certificate names the host
                smtp.starttls(context=ssl.create_default_context(cafile=values.get("ca_file")))
            if "username" in values:
                smtp.login(values["username"].reveal(), values["password"].reveal())
            smtp.send_message(message)
    except smtplib.SMTPResponseException as exc:
        retryable = exc.smtp_code >= 400 and exc.smtp_code < 500
        raise DeliveryFailure("smtp_error", f"SMTP {exc.smtp_code}", status_code=exc.smtp_code,
                              retryable=retryable) from None
    except TimeoutError:
        raise DeliveryFailure("timeout", f"no SMTP reply within {timeout_s:g} s") from None
    except ConnectionRefusedError:
        raise DeliveryFailure("connection_refused", "the SMTP server refused the connection") from None
    except (ConnectionResetError, smtplib.SMTPServerDisconnected):
        raise DeliveryFailure("connection_reset", "the SMTP server closed the connection") from None
    except (OSError, smtplib.SMTPException) as exc:
        raise DeliveryFailure("smtp_error", type(exc).__name__) from None
    return 250


_SENDERS = {"webhook": _webhook, "slack": _slack, "sms": _sms, "file": _file, "email": _email}
