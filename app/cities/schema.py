"""The city file: one YAML document that declares a jurisdiction and everything it offers.

The models here are the format. The JSON Schema published in ``docs/city-file.schema.json``
is generated from them (``kerbside city schema``), and the export writes them back, so that
apply → export → apply changes nothing. New sections (channel accounts, notification
templates) are new optional fields of ``CityFile``: the loader, the plan and the export treat
every section the same way.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    field_validator,
    model_validator,
)

from app.channels.accounts import CityChannels
from app.imports.schemas import ColumnMapping
from app.social.config import Social
from app.talk.spikes import SpikeRule

FORMAT_VERSION = 1

_SPAN = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_span(value: Any) -> Any:
    """``"2d"``, ``"36h"``, ``"90m"``, ``"45s"``, ``"1w"``, or ISO 8601 (``"P2D"``); pydantic
    takes the ISO form and numbers of seconds itself."""
    if isinstance(value, str):
        found = _SPAN.match(value)
        if found:
            return timedelta(seconds=float(found.group(1)) * _UNIT_SECONDS[found.group(2)])
    return value


def format_span(span: timedelta) -> str:
    """The shortest exact compact form: ``timedelta(days=2)`` → ``"2d"``."""
    seconds = span.total_seconds()
    for unit in ("w", "d", "h", "m"):
        size = _UNIT_SECONDS[unit]
        if seconds and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def _span_schema(schema: dict[str, Any]) -> None:
    """What a span is on the wire: the compact form (all we write), ISO 8601, or seconds."""
    schema.clear()
    schema["anyOf"] = [
        {"type": "string", "pattern": _SPAN.pattern},
        {"type": "string", "format": "duration"},
        {"type": "number"},
    ]
    schema["examples"] = ["2d", "36h", "P14D"]


def _non_negative(span: timedelta) -> timedelta:
    if span < timedelta(0):
        raise ValueError("must not be negative")
    return span


Span = Annotated[
    timedelta,
    BeforeValidator(parse_span),
    PlainSerializer(format_span, return_type=str),
    Field(json_schema_extra=lambda schema: _span_schema(schema)),
]
NonNegativeSpan = Annotated[Span, BeforeValidator(lambda v: v), Field()]
Code = Annotated[str, Field(pattern=r"^[a-z0-9_.-]{1,64}$")]
Language = Annotated[str, Field(pattern=r"^[a-z]{2,3}(-[A-Za-z0-9]{2,8})?$")]
PerLanguage = dict[Language, Annotated[str, Field(min_length=1, max_length=2000)]]
WordsPerLanguage = dict[Language, list[Annotated[str, Field(min_length=1, max_length=100)]]]
Crs = Annotated[
    str,
    Field(
        pattern=r"^EPSG:[0-9]{4,6}$",
        description="The coordinates' reference system, e.g. EPSG:28992 (RD New), EPSG:3006 "
        "(SWEREF99 TM), EPSG:31370 (Belgian Lambert 72), EPSG:3857; default EPSG:4326",
    ),
]


class Strict(BaseModel):
    # One JSON Schema for reading and writing (the admin API sends back what it takes): spans
    # would otherwise differ between the two ("format": "duration", defaults as "P30D" or
    # "30d"), and OpenAPI clients would get two models of one name.
    model_config = ConfigDict(
        extra="forbid", str_strip_whitespace=True, json_schema_mode_override="validation"
    )


class GeometrySource(Strict):
    """GeoJSON given inline or as a path relative to the city file, in a declared CRS."""

    file: str | None = Field(default=None, description="A GeoJSON file, relative to this file")
    geojson: dict[str, Any] | None = Field(
        default=None, description="A GeoJSON geometry, Feature or FeatureCollection"
    )
    crs: Crs = "EPSG:4326"

    @model_validator(mode="after")
    def _one_source(self) -> GeometrySource:
        if (self.file is None) == (self.geojson is None):
            raise ValueError("give exactly one of file or geojson")
        return self


class AreaSet(GeometrySource):
    """Areas from the features of one GeoJSON source: which properties give code and name."""

    kind: Annotated[str, Field(pattern=r"^[a-z_]{1,32}$")] = "district"
    code_property: str = Field(description="The feature property that holds the area's code")
    name_property: str | None = Field(
        default=None, description="The property that holds its name (default: the code)"
    )


class Jurisdiction(Strict):
    slug: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,99}$")] = Field(
        description="Stable id, also the Open311 jurisdiction_id"
    )
    name: Annotated[str, Field(min_length=1, max_length=200)]
    timezone: str = "UTC"
    languages: list[Language] = Field(default_factory=lambda: ["en"], min_length=1)
    reference_prefix: Annotated[str, Field(pattern=r"^[A-Z]{1,8}$")] = "K"
    allow_anonymous: bool = True
    business_hours: dict[
        Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"],
        list[
            tuple[
                Annotated[str, Field(pattern=r"^\d\d:\d\d$")],
                Annotated[str, Field(pattern=r"^\d\d:\d\d$")],
            ]
        ],
    ] = Field(
        default_factory=lambda: {
            day: [("08:00", "18:00")] for day in ("mon", "tue", "wed", "thu", "fri")
        },
        description="Opening hours in local time; days left out are closed",
    )
    holidays: list[date] = Field(default_factory=list)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("languages")
    @classmethod
    def _unique_languages(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("each language once")
        return value


class Attribute(Strict):
    """An Open311 attribute: a question the report form asks."""

    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")]
    datatype: Literal[
        "string", "number", "datetime", "text", "singlevaluelist", "multivaluelist"
    ] = "string"
    required: bool = False
    variable: bool = True
    order: int | None = None
    description: str | None = None
    datatype_description: str | None = None
    values: list[dict[Literal["key", "name"], str]] = Field(default_factory=list)

    @model_validator(mode="after")
    def _lists_have_values(self) -> Attribute:
        if self.datatype.endswith("valuelist") and not self.values:
            raise ValueError(f"a {self.datatype} needs values")
        return self


class Service(Strict):
    code: Code
    names: PerLanguage = Field(min_length=1)
    descriptions: PerLanguage = Field(default_factory=dict)
    group: Annotated[str, Field(max_length=100)] | None = None
    keywords: WordsPerLanguage = Field(default_factory=dict)
    hashtags: WordsPerLanguage = Field(
        default_factory=dict, description="Hashtags (without #) that mark a post as this service"
    )
    duplicate_strategy: Literal["radius", "same_address", "never"] = Field(
        default="radius",
        description=(
            "radius: the nearest open ticket within duplicate_radius_m (GPS reports from the "
            "app); same_address: the same normalised address, or the same street within "
            "duplicate_street_within_m (call-centre reports geocoded to an address; a report "
            "without an address falls back to radius); never: every report is its own ticket"
        ),
    )
    duplicate_radius_m: float = Field(default=50.0, gt=0, le=2000)
    duplicate_street_within_m: float = Field(
        default=0.0,
        ge=0,
        le=2000,
        description="same_address: other houses on the same street this close join too (0: "
        "the same address only)",
    )
    duplicate_window: Span = timedelta(days=30)
    acknowledge_within: Span | None = None
    resolve_within: Span | None = None
    business_hours: bool = Field(
        default=False, description="Service levels count the city's business hours only"
    )
    hazard_level: int = Field(default=1, ge=1, le=5)
    attributes: list[Attribute] = Field(default_factory=list)
    description_required: bool = False
    completion_photo_required: bool = False
    reopen_within: Span = timedelta(days=14)
    public_location_snap_m: int = Field(default=0, ge=0, le=5000)
    active: bool = True

    @field_validator("duplicate_window", "acknowledge_within", "resolve_within", "reopen_within")
    @classmethod
    def _not_negative(cls, value: timedelta | None) -> timedelta | None:
        return _non_negative(value) if value is not None else None

    @field_validator("attributes")
    @classmethod
    def _unique_attributes(cls, value: list[Attribute]) -> list[Attribute]:
        codes = [a.code for a in value]
        if len(set(codes)) != len(codes):
            raise ValueError("attribute codes must be unique")
        return value


class AssignmentRule(Strict):
    """New tickets in these areas (any, when empty) of these services (any) go to the crew."""

    areas: list[str] = Field(default_factory=list)
    services: list[Code] = Field(default_factory=list)


class Crew(Strict):
    name: Annotated[str, Field(min_length=1, max_length=100)]
    areas: list[str] = Field(default_factory=list, description="Its territory: area codes")
    assign: list[AssignmentRule] = Field(default_factory=list)
    active: bool = True


TEMPLATE_STATUSES = Literal[
    "open",
    "acknowledged",
    "scheduled",
    "in_progress",
    "fixed",
    "closed",
    "reopened",
    "duplicate",
    "not_our_responsibility",
    "rejected",
]


class Template(Strict):
    """The public note sent with a status change. Placeholders: ``{reference}``,
    ``{service}``, ``{status}``, ``{expected_date}``, ``{area}``, ``{jurisdiction}``."""

    status: TEMPLATE_STATUSES
    language: Language = "en"
    service: Code | None = Field(default=None, description="A service's code; all when omitted")
    body: Annotated[str, Field(min_length=1, max_length=2000)]


class History(Strict):
    """How this city's legacy exports read: ``kerbside import`` and ``POST /v1/imports`` use
    it unless told otherwise (see docs/import.md)."""

    columns: ColumnMapping = Field(
        default_factory=ColumnMapping, description="Which column holds which field"
    )
    categories: dict[Annotated[str, Field(min_length=1, max_length=200)], Code] = Field(
        default_factory=dict, description="A legacy category → one of this file's service codes"
    )
    date_format: Annotated[str, Field(max_length=100)] | None = Field(
        default=None, description="strptime format of times that are not ISO 8601"
    )
    statuses: bool = Field(default=True, description="Import legacy statuses and closures")


ClockTime = Annotated[str, Field(pattern=r"^([01][0-9]|2[0-3]):[0-5][0-9]$")]


class QuietHours(Strict):
    """Local times between which non-urgent messages wait (broadcasts never wait)."""

    start: ClockTime = Field(description="e.g. 22:00")
    end: ClockTime = Field(description="e.g. 07:00 (the next morning when before start)")


class ChannelPolicy(Strict):
    quiet_hours: QuietHours | None = None
    max_per_contact_per_hour: int | None = Field(default=None, ge=1, le=1000)


MESSAGE_PLACEHOLDERS = (
    "reference",
    "service",
    "status",
    "jurisdiction",
    "into",
    "link",
    "expected",
    "note",
    "photo",
    "answer",
)


class MessageTemplate(Strict):
    """The city's own words for a message, instead of the built-in ones. Placeholders:
    ``{reference}``, ``{service}``, ``{status}``, ``{jurisdiction}``, ``{into}`` (merged),
    ``{link}``, ``{expected}``, ``{note}`` (the status change's public note), ``{photo}`` (a
    fix's after-photo link, empty without one), ``{answer}`` (a question's link to answer).
    The link to
    follow the ticket and the one-click way out are always added below the body."""

    message: Literal["received", "joined", "status", "comment", "merged", "information"] = Field(
        description="received: the acknowledgement; joined: a report joined a ticket; status: a "
        "status change (give `status` for one status only); comment: a staff reply; merged; "
        "information: staff ask the reporters a question ({note} is the question, {answer} "
        "the link to answer, added below when the body leaves it out)"
    )
    status: TEMPLATE_STATUSES | None = None
    language: Language = "en"
    subject: Annotated[str, Field(min_length=1, max_length=200)]
    body: Annotated[str, Field(min_length=1, max_length=2000)]

    @model_validator(mode="after")
    def _placeholders_known(self) -> MessageTemplate:
        sample = dict.fromkeys(MESSAGE_PLACEHOLDERS, "x")
        for field_name in ("subject", "body"):
            try:
                getattr(self, field_name).format(**sample)
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"{field_name}: unknown or broken placeholder {exc} (known: "
                    + ", ".join("{" + n + "}" for n in MESSAGE_PLACEHOLDERS)
                    + ")"
                ) from None
        if self.status is not None and self.message != "status":
            raise ValueError("status goes with message: status only")
        return self


class Notifications(Strict):
    """When messages may go out: quiet hours and a per-contact hourly limit, for every
    channel and, where a channel needs its own, per contact kind (e.g. ``phone`` for SMS);
    and the city's own words for its messages."""

    quiet_hours: QuietHours | None = None
    max_per_contact_per_hour: int | None = Field(default=None, ge=1, le=1000)
    channels: dict[
        Literal[
            "email",
            "phone",
            "fcm",
            "webpush",
            "x",
            "facebook",
            "whatsapp",
            "mastodon",
            "bluesky",
            "webhook",
        ],
        ChannelPolicy,
    ] = Field(default_factory=dict)
    templates: list[MessageTemplate] = Field(default_factory=list)


class Classify(Strict):
    """How posts that tag the city are classified (docs/social.md#classify): the service
    words are each service's ``keywords`` and ``hashtags``; here the city's own sensitive
    terms, which send a post to the communications team instead of a ticket."""

    sensitive: WordsPerLanguage = Field(
        default_factory=dict,
        description="The city's own sensitive terms per language (local politicians, parties, "
        "current controversies): a post naming one goes to communications, never a ticket",
    )
    builtin_sensitive: bool = Field(
        default=True,
        description="Also the built-in terms (politics, discrimination, threats, legal claims, "
        "the press) in English, Dutch and Swedish",
    )
    report_threshold: float = Field(
        default=0.5,
        ge=0.05,
        le=0.95,
        description="How sure the classifier must be that a post is a report (higher: fewer "
        "tickets from chat, more reports left to a person)",
    )


class Privacy(Strict):
    """How long this city keeps personal data (docs/privacy.md)."""

    contact_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Days after a ticket is closed before its contacts, reporter names and "
        "consent evidence are dropped; default: KERBSIDE_PRIVACY_CONTACT_RETENTION_DAYS",
    )


class Talk(Strict):
    """When a burst of reports and posts is a spike (docs/talk.md): N of one service within R
    metres in T minutes, and beyond what that place usually sees at that hour of the week."""

    min_signals: int = Field(
        default=SpikeRule.min_signals,
        ge=2,
        le=10_000,
        description="N: the fewest reports and posts that make a spike, however quiet the place",
    )
    radius_m: float = Field(default=SpikeRule.radius_m, ge=10, le=5_000, description="R, in metres")
    window_minutes: int = Field(
        default=SpikeRule.window_minutes,
        ge=5,
        le=1_440,
        description="T; an alert with nothing new for this long closes by itself",
    )
    baseline_weeks: int = Field(
        default=SpikeRule.baseline_weeks,
        ge=1,
        le=52,
        description='Weeks of history behind "what the place usually sees at this hour"',
    )
    factor: float = Field(
        default=SpikeRule.factor,
        ge=1,
        le=100,
        description="A spike is at least this many times the usual count (plus z deviations)",
    )
    z: float = Field(
        default=SpikeRule.z, ge=0, le=10, description="Poisson deviations above the usual"
    )


class CityFile(Strict):
    """One jurisdiction, declared."""

    kerbside: Annotated[Literal[1], Field(description="The city file format's version")] = 1
    jurisdiction: Jurisdiction
    boundary: GeometrySource
    areas: list[AreaSet] = Field(default_factory=list)
    services: list[Service] = Field(default_factory=list)
    crews: list[Crew] = Field(default_factory=list)
    templates: list[Template] = Field(default_factory=list)
    history: History = Field(default_factory=History)
    notifications: Notifications = Field(default_factory=Notifications)
    classify: Classify = Field(default_factory=Classify)
    privacy: Privacy = Field(default_factory=Privacy)
    social: Social = Field(default_factory=Social)
    talk: Talk = Field(default_factory=Talk)
    channels: CityChannels = Field(
        default_factory=CityChannels,
        description="The city's own accounts per channel (sender, SMTP server, SMS account, "
        "push projects, partner webhooks); every secret by the NAME of an environment "
        "variable. A channel left out uses the deployment's",
    )

    @model_validator(mode="after")
    def _references_resolve(self) -> CityFile:
        problems: list[str] = []
        codes = [s.code for s in self.services]
        for code in {c for c in codes if codes.count(c) > 1}:
            problems.append(f"services: code {code!r} appears more than once")
        names = [c.name for c in self.crews]
        for name in {n for n in names if names.count(n) > 1}:
            problems.append(f"crews: name {name!r} appears more than once")
        known = set(codes)
        for i, crew in enumerate(self.crews):
            for j, rule in enumerate(crew.assign):
                for code in rule.services:
                    if code not in known:
                        problems.append(
                            f"crews[{i}].assign[{j}].services: unknown service {code!r}"
                        )
        for i, template in enumerate(self.templates):
            if template.service is not None and template.service not in known:
                problems.append(f"templates[{i}].service: unknown service {template.service!r}")
            if template.language not in self.jurisdiction.languages:
                problems.append(
                    f"templates[{i}].language: {template.language!r} is not one of the"
                    " jurisdiction's languages"
                )
        for category, code in self.history.categories.items():
            if code not in known:
                problems.append(f"history.categories[{category!r}]: unknown service {code!r}")
        keys = [(t.status, t.language, t.service) for t in self.templates]
        if len(set(keys)) != len(keys):
            problems.append("templates: one template per status, language and service")
        if problems:
            raise ValueError("; ".join(sorted(problems)))
        return self


def json_schema() -> dict[str, Any]:
    """The city file's JSON Schema (published as ``docs/city-file.schema.json``)."""
    schema = CityFile.model_json_schema(mode="validation")
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://kerbside.dev/schemas/city-file-1.json"
    schema["title"] = "Kerbside city file"
    return schema
