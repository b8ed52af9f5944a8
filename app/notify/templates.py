"""What a notification says: built-in messages per event and language (English, Dutch,
Swedish), with the ticket's reference, its public expected date and the city's own note.

The city's response templates (``response_template``, from the city file) already wrote the
public note of a status change onto the timeline event; the message carries that note. Texts
for another language come with a translation here; a language we lack falls back to English.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any

LANGUAGES = ("en", "nl", "sv")


@dataclass(frozen=True)
class Facts:
    """What a message may say (none of it personal)."""

    reference: str
    service: str
    status: str
    note: str | None
    expected: date | None
    link: str
    jurisdiction: str
    into: str | None = None  # merged: the surviving ticket's reference
    satisfaction: str | None = None  # fixed: the "was it fixed?" link (app/talk)
    photo: str | None = None  # fixed: the public link of the crew's after-photo
    answer: str | None = None  # a question from staff: this message's own link to answer


_STATUS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "open": "is open",
        "acknowledged": "is on our list",
        "scheduled": "is scheduled",
        "in_progress": "is being worked on",
        "fixed": "is fixed",
        "closed": "is closed",
        "reopened": "is reopened",
        "duplicate": "is a duplicate",
        "not_our_responsibility": "is not ours to fix: we passed it on",
        "rejected": "was not taken up",
    },
    "nl": {
        "open": "staat open",
        "acknowledged": "staat op onze lijst",
        "scheduled": "is ingepland",
        "in_progress": "wordt nu aangepakt",
        "fixed": "is opgelost",
        "closed": "is afgesloten",
        "reopened": "is heropend",
        "duplicate": "is een dubbele melding",
        "not_our_responsibility": "valt niet onder ons: we hebben het doorgegeven",
        "rejected": "is niet in behandeling genomen",
    },
    "sv": {
        "open": "är öppen",
        "acknowledged": "finns på vår lista",
        "scheduled": "är planerad",
        "in_progress": "åtgärdas nu",
        "fixed": "är åtgärdad",
        "closed": "är avslutad",
        "reopened": "är återöppnad",
        "duplicate": "är en dubblett",
        "not_our_responsibility": "ligger inte på oss: vi har skickat den vidare",
        "rejected": "togs inte upp",
    },
}

_TEXT: Mapping[str, Mapping[str, str]] = {
    "en": {
        "received.subject": "We received your report: {reference}",
        "received.body": "Thank you. Your report of a {service} is {reference}.",
        "joined.subject": "Your report is part of {reference}",
        "joined.body": "Thank you. Others reported this {service} too: it is {reference}.",
        "status.subject": "{reference} {status}",
        "status.body": "{reference} ({service}) {status}.",
        "comment.subject": "{jurisdiction} replied about {reference}",
        "comment.body": "{jurisdiction} replied about {reference} ({service}):",
        "merged.subject": "Your report is now part of {into}",
        "merged.body": "{reference} is the same problem as {into}; we follow it up there, and "
        "you will hear about {into} from now on.",
        "area.new.subject": "New report near you: {service}",
        "area.new.body": "A {service} was reported in a place you follow: {reference}.",
        "area.fixed.subject": "Fixed near you: {service}",
        "area.fixed.body": "A {service} in a place you follow is fixed: {reference}.",
        "digest.subject": "News in {label}: {new} new, {fixed} fixed",
        "digest.new": "New reports:",
        "digest.fixed": "Fixed:",
        "expected": "We expect it to be done by {expected}.",
        "photo": "See it now: {photo}",
        "information.subject": "{jurisdiction} has a question about {reference}",
        "information.body": "{jurisdiction} needs more information about {reference} ({service}):",
        "answer": "Answer here: {answer}",
        "follow": "Follow it here: {link}",
        "fixed?": "Was it fixed? One tap to tell us: {satisfaction}",
        "stop": "To stop these messages: {unsubscribe}",
    },
    "nl": {
        "received.subject": "We hebben uw melding ontvangen: {reference}",
        "received.body": "Bedankt. Uw melding ({service}) heeft nummer {reference}.",
        "joined.subject": "Uw melding hoort bij {reference}",
        "joined.body": "Bedankt. Anderen meldden dit ook ({service}): het is {reference}.",
        "status.subject": "{reference} {status}",
        "status.body": "Melding {reference} ({service}) {status}.",
        "comment.subject": "{jurisdiction} reageerde op {reference}",
        "comment.body": "{jurisdiction} reageerde op {reference} ({service}):",
        "merged.subject": "Uw melding hoort nu bij {into}",
        "merged.body": "{reference} is hetzelfde probleem als {into}; we pakken het daar op en u "
        "hoort voortaan over {into}.",
        "area.new.subject": "Nieuwe melding bij u in de buurt: {service}",
        "area.new.body": "Er is een melding gedaan ({service}) in een gebied dat u volgt: "
        "{reference}.",
        "area.fixed.subject": "Opgelost bij u in de buurt: {service}",
        "area.fixed.body": "Een melding ({service}) in een gebied dat u volgt is opgelost: "
        "{reference}.",
        "digest.subject": "Nieuws in {label}: {new} nieuw, {fixed} opgelost",
        "digest.new": "Nieuwe meldingen:",
        "digest.fixed": "Opgelost:",
        "expected": "We verwachten het klaar te hebben op {expected}.",
        "photo": "Zo ziet het er nu uit: {photo}",
        "information.subject": "{jurisdiction} heeft een vraag over {reference}",
        "information.body": "{jurisdiction} heeft meer informatie nodig over melding "
        "{reference} ({service}):",
        "answer": "Antwoord hier: {answer}",
        "follow": "Volg het hier: {link}",
        "fixed?": "Is het opgelost? Laat het ons met één tik weten: {satisfaction}",
        "stop": "Geen berichten meer ontvangen: {unsubscribe}",
    },
    "sv": {
        "received.subject": "Vi har tagit emot din felanmälan: {reference}",
        "received.body": "Tack. Din felanmälan ({service}) har nummer {reference}.",
        "joined.subject": "Din felanmälan hör till {reference}",
        "joined.body": "Tack. Andra har också anmält detta ({service}): det är {reference}.",
        "status.subject": "{reference} {status}",
        "status.body": "Felanmälan {reference} ({service}) {status}.",
        "comment.subject": "{jurisdiction} svarade om {reference}",
        "comment.body": "{jurisdiction} svarade om {reference} ({service}):",
        "merged.subject": "Din felanmälan hör nu till {into}",
        "merged.body": "{reference} är samma problem som {into}; vi följer upp det där och du "
        "får framöver besked om {into}.",
        "area.new.subject": "Ny felanmälan nära dig: {service}",
        "area.new.body": "En felanmälan ({service}) har gjorts i ett område du följer: "
        "{reference}.",
        "area.fixed.subject": "Åtgärdat nära dig: {service}",
        "area.fixed.body": "En felanmälan ({service}) i ett område du följer är åtgärdad: "
        "{reference}.",
        "digest.subject": "Nytt i {label}: {new} nya, {fixed} åtgärdade",
        "digest.new": "Nya felanmälningar:",
        "digest.fixed": "Åtgärdade:",
        "expected": "Vi räknar med att det är klart {expected}.",
        "photo": "Så här ser det ut nu: {photo}",
        "information.subject": "{jurisdiction} har en fråga om {reference}",
        "information.body": "{jurisdiction} behöver mer information om felanmälan "
        "{reference} ({service}):",
        "answer": "Svara här: {answer}",
        "follow": "Följ det här: {link}",
        "fixed?": "Är det åtgärdat? Svara med ett tryck: {satisfaction}",
        "stop": "Sluta få dessa meddelanden: {unsubscribe}",
    },
}


def language_of(wanted: str | None, offered: tuple[str, ...] = ()) -> str:
    """The message language: the person's, else the city's first that we have, else English."""
    for candidate in (wanted, *offered):
        if candidate:
            base = candidate.split("-")[0].lower()
            if base in LANGUAGES:
                return base
    return "en"


def _own_words(
    templates: Sequence[Mapping[str, Any]], key: str, status: str, language: str
) -> Mapping[str, Any] | None:
    """The city's template for this message: one for this status first, then any status."""
    found = [
        t for t in templates if t.get("message") == key and t.get("language", "en") == language
    ]
    return next((t for t in found if t.get("status") == status), None) or next(
        (t for t in found if t.get("status") is None), None
    )


def render(
    event: str,
    facts: Facts,
    language: str,
    unsubscribe: str,
    *,
    reason: str = "subscriber",
    templates: Sequence[Mapping[str, Any]] = (),
) -> tuple[str, str]:
    """Subject and plain-text body of the message about ``event`` (an event kind) to someone
    who hears of it for ``reason`` (their own report, a ticket or a place they follow), in the
    city's own words where its file gives them (``notifications.templates``)."""
    text = _TEXT[language]
    if reason == "area":
        key = "area.new" if event == "ticket_opened" else "area.fixed"
    else:
        key = {
            "ticket_opened": "received",
            "report_attached": "joined",
            "status_changed": "status",
            "comment": "comment",
            "merged": "merged",
            "information_requested": "information",
        }[event]
    values = {
        "reference": facts.reference,
        "service": facts.service,
        "status": _STATUS[language].get(facts.status, facts.status),
        "jurisdiction": facts.jurisdiction,
        "into": facts.into or facts.reference,
        "link": facts.link,
        "expected": facts.expected.isoformat() if facts.expected else "",
        "photo": facts.photo or "",
        "answer": facts.answer or "",
        "unsubscribe": unsubscribe,
        "satisfaction": facts.satisfaction or "",
    }
    asked = [text["fixed?"].format(**values)] if facts.satisfaction else []
    own = _own_words(templates, key, facts.status, language) if reason != "area" else None
    if own is not None:
        words = {**values, "note": facts.note or ""}
        lines = [str(own["body"]).format(**words).strip()]
        if facts.answer and facts.answer not in lines[0]:
            lines.append(text["answer"].format(**values))  # a question always says where to answer
        lines += ["", *asked, text["follow"].format(**values), text["stop"].format(**values)]
        return str(own["subject"]).format(**words), "\n".join(lines)
    lines = [text[f"{key}.body"].format(**values)]
    if facts.note and key in ("status", "comment", "information"):
        lines.append(facts.note)
    if facts.answer and key == "information":
        lines.append(text["answer"].format(**values))
    if (
        facts.expected
        and key in ("received", "joined", "status")
        and facts.status
        not in (
            "fixed",
            "closed",
        )
    ):
        lines.append(text["expected"].format(**values))
    if facts.photo and key in ("status", "area.fixed"):
        lines.append(text["photo"].format(**values))
    lines += ["", *asked, text["follow"].format(**values), text["stop"].format(**values)]
    return text[f"{key}.subject"].format(**values), "\n".join(lines)


# A notice on an account the person linked (app/linking): only that there is news, and
# their own page. No reference, service, place or status: the platform carrying it (Meta, a
# Mastodon server's admins) would otherwise learn which public ticket, at which place, this
# account holder reported.
_NOTICE: Mapping[str, tuple[str, str]] = {
    "en": (
        "News about your report",
        "There is news about your report. See it on your page: {link}",
    ),
    "nl": (
        "Nieuws over uw melding",
        "Er is nieuws over uw melding. Bekijk het op uw pagina: {link}",
    ),
    "sv": (
        "Nytt om din felanmälan",
        "Det finns nytt om din felanmälan. Se det på din sida: {link}",
    ),
}


# The one message a linked Messenger conversation gets at once (inside the window the person
# just opened): that it worked, and how to stop.
_LINKED: Mapping[str, str] = {
    "en": "Linked. You will get a short notice here when there is news about your reports. "
    "To stop, unlink this conversation on your page.",
    "nl": "Gekoppeld. U krijgt hier een kort bericht als er nieuws is over uw meldingen. "
    "Wilt u dat niet meer, ontkoppel dit gesprek dan op uw pagina.",
    "sv": "Kopplat. Du får ett kort meddelande här när det finns nytt om dina felanmälningar. "
    "Vill du sluta, koppla bort den här konversationen på din sida.",
}


def render_linked(language: str) -> str:
    """The confirmation in a conversation just linked for notices."""
    return _LINKED.get(language_of(language), _LINKED["en"])


def render_notice(language: str, link: str) -> tuple[str, str]:
    """The notice on a linked account: there is news, and the link to the person's page."""
    subject, body = _NOTICE.get(language, _NOTICE["en"])
    return subject, body.format(link=link)


def render_broadcast(headline: str, body: str, language: str, unsubscribe: str) -> tuple[str, str]:
    """An emergency notice: the city's own words, and the way out."""
    stop = _TEXT[language]["stop"].format(unsubscribe=unsubscribe)
    return headline, f"{body}\n\n{stop}"


def render_digest(
    label: str, new: list[str], fixed: list[str], language: str, unsubscribe: str, base: str
) -> tuple[str, str]:
    """A followed place's daily news: the tickets opened and fixed there, with links."""
    text = _TEXT[language]
    subject = text["digest.subject"].format(label=label, new=len(new), fixed=len(fixed))
    lines: list[str] = []
    for heading, references in ((text["digest.new"], new), (text["digest.fixed"], fixed)):
        if references:
            lines.append(heading)
            lines += [f"- {r}: {base}/v1/tickets/{r}" for r in references]
            lines.append("")
    lines.append(text["stop"].format(unsubscribe=unsubscribe))
    return subject, "\n".join(lines)
