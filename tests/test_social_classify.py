"""The social classifier: hashtags, keywords and compounds in English, Dutch and Swedish,
language, sentiment, sensitive posts, the model of the city's history, the cache per
jurisdiction, ``kerbside social classify``, and the city file's ``classify`` section.

Every text here is written for these tests (no outside data).
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from app.cities import service as cities
from app.jurisdictions.catalog import Catalog
from app.reports.intake import Place, Submission, Submitter
from app.reports.models import Channel, LocationSource
from app.reports.service import submit_report
from app.social.classify import (
    Classifier,
    UnknownJurisdiction,
    classifier_for,
    train_report_model,
    train_service_model,
)
from app.social.text import fold, read, stem
from app.social.vocabulary import ServiceWords, Vocabulary

SERVICES = (
    ServiceWords(
        "pothole",
        {"en": "Pothole", "nl": "Gat in de weg", "sv": "Potthål"},
        {
            "en": ["pothole", "hole in the road"],
            "nl": ["kuil", "gat in de weg", "wegdek"],
            "sv": ["potthål", "hål i vägen", "vägskada"],
        },
        {"nl": ["kuil"], "en": ["pothole"], "sv": ["potthål"]},
    ),
    ServiceWords(
        "streetlight",
        {"en": "Streetlight out", "nl": "Straatverlichting", "sv": "Gatubelysning"},
        {
            "en": ["streetlight", "street light", "lamp post"],
            "nl": ["lantaarnpaal", "straatverlichting"],
            "sv": ["gatlykta", "belysning", "lyktstolpe"],
        },
        {"nl": ["lantaarnpaal"]},
    ),
    ServiceWords(
        "waste",
        {"en": "Fly-tipping", "nl": "Afval", "sv": "Skräp"},
        {
            "en": ["rubbish", "dumped", "fly-tipping"],
            "nl": ["afval", "vuilniszakken", "grofvuil"],
            "sv": ["skräp", "sopor", "soppåsar"],
        },
        {},
    ),
)
VOCABULARY = Vocabulary(
    services=SERVICES, languages=("nl", "en", "sv"), sensitive={"nl": ["Kiesplein"]}
)


@pytest.fixture(scope="module")
def classifier() -> Classifier:
    return Classifier(VOCABULARY)


# -- words ------------------------------------------------------------------------------------


def test_folding_and_stems_meet_across_inflections() -> None:
    assert fold("Straße ÖVERSVÄMNING Lantaarnpaal\u200f") == "strasse oversvamning lantaarnpaal"
    assert stem("kuilen", "nl") == stem("kuil", "nl")
    assert stem("straten", "nl") == stem("straat", "nl")
    assert stem("lamporna", "sv") == stem("lampa", "sv")
    assert stem("potholes", "en") == stem("pothole", "en")
    words = read("@stadsbeheer050 huge #Kuil 😡 on https://t.co/x \u202bשלום\u202c")  # noqa: RUF001
    assert words.hashtags == ("kuil",)
    assert words.emoji == ("😡",)
    assert "stadsbeheer050" not in words.tokens
    assert "שלום" in words.tokens


@pytest.mark.parametrize(
    ("post", "service"),
    [
        ("@stadsbeheer050 huge pothole on Vismarkt again #kuil", "pothole"),
        ("#KUIL bij de Vismarkt", "pothole"),
        ("Er zit een diepe kuil in het wegdek op de Herestraat", "pothole"),
        ("There is a hole in the road outside number 12, please fix", "pothole"),
        ("Stort hål i vägen vid skolan, farligt för cyklister", "pothole"),
        ("Potthålen på Storgatan blir bara större", "pothole"),
        ("De lantaarnpaal bij het station is al weken kapot", "streetlight"),
        ("The street light on Elm Road has been out for days", "streetlight"),
        ("Gatlyktan vid busshållplatsen fungerar inte", "streetlight"),
        ("Someone dumped rubbish behind the shops again", "waste"),
        ("Weer vuilniszakken gedumpt naast de container", "waste"),
        ("Soppåsar slängda i parken, snälla städa", "waste"),
    ],
)
def test_hashtags_and_keywords_in_three_languages(
    classifier: Classifier, post: str, service: str
) -> None:
    result = classifier.classify(post)
    assert result.is_report, result
    assert result.service_code == service, result
    assert 0 < result.confidence <= 1


@pytest.mark.parametrize(
    ("post", "service"),
    [
        ("lantaarnpaalnummer 4411 doet het niet meer", "streetlight"),  # modifier first
        ("De straatverlichtingskast staat open en is kapot", "streetlight"),
        ("Gatubelysningen längs cykelbanan är trasig", "streetlight"),  # head last
        ("Grofvuilhoop op de stoep, al dagen", "waste"),
        ("Vägskadorna på bron är farliga", "pothole"),
    ],
)
def test_compounds_in_dutch_and_swedish(classifier: Classifier, post: str, service: str) -> None:
    result = classifier.classify(post)
    assert result.service_code == service, result


@pytest.mark.parametrize(
    "post",
    [
        "Bedankt voor de snelle hulp, top!",
        "Happy new year to everyone at the council!",
        "Tack för en fin sommar, vi ses!",
        "RT @stadsbeheer050: the pothole on Vismarkt is fixed",
        "",
        "😂😂😂",
    ],
)
def test_chat_reposts_and_empty_posts_are_not_reports(classifier: Classifier, post: str) -> None:
    result = classifier.classify(post)
    assert not result.is_report, result
    assert result.service_code is None
    assert result.reason


@pytest.mark.parametrize(
    ("post", "language"),
    [
        ("The streetlight outside my house has been broken for a week", "en"),
        ("Er ligt al drie dagen afval naast de container in onze straat", "nl"),
        ("Det ligger skräp överallt i parken och ingen städar", "sv"),
        ("lantaarnpaal kapot", "nl"),  # no function words: the city's and the cue words decide
        ("Lampan fungerar inte", "sv"),
        ("يوجد حفرة كبيرة في الشارع", "ar"),
        ("יש בור גדול בכביש", "he"),
        ("👍👍", "und"),
        ("ok", "und"),
    ],
)
def test_language(classifier: Classifier, post: str, language: str) -> None:
    assert classifier.classify(post).language == language


@pytest.mark.parametrize(
    ("post", "sign"),
    [
        ("Thanks, fixed within a day, great job!", 1),
        ("Terrible, the lamp is broken again and nobody cares", -1),
        ("not bad at all", 1),
        ("Super bedankt, snel opgelost!", 1),
        ("Belachelijk, de lantaarnpaal is weer kapot", -1),
        ("niet goed, helemaal niet", -1),
        ("Tusen tack, bra jobbat!", 1),
        ("Usch, gatlyktan är trasig igen, så dåligt", -1),
        ("inte bra alls", -1),
        # A negation reaches the end of its clause, not the next sentence or clause.
        ("Tredje gången jag anmäler och ingenting händer. Värdelöst!", -1),
        ("Gatan översvämmad igen och ingen kommer, en katastrof", -1),
        ("Not great, terrible actually", -1),
        ("No, it works fine now, thanks", 1),
        ("Soporna har inte tömts, det luktar fruktansvärt", -1),
        ("😡🤬", -1),
        ("🎉👍", 1),
    ],
)
def test_sentiment_sign(classifier: Classifier, post: str, sign: int) -> None:
    mood = classifier.classify(post).sentiment
    assert -1 <= mood <= 1
    assert mood * sign > 0.1, mood


def test_a_post_is_read_in_clauses() -> None:
    words = read("Not fixed. Still broken, useless!\nRead https://x.example/a.b, @city ok")
    assert words.tokens == (
        "not", "fixed", "still", "broken", "useless", "read", "ok",
    )  # fmt: skip
    # "still", "useless" and "read" begin clauses; a URL or mention removed is no boundary.
    assert words.clause_starts == (2, 4, 5)


def test_neutral_posts_have_no_sentiment(classifier: Classifier) -> None:
    assert classifier.classify("De lantaarnpaal staat op de hoek").sentiment == 0


@pytest.mark.parametrize(
    ("post", "why"),
    [
        ("De wethouder moet aftreden om dit beleid", "politics"),
        ("Who will you vote for in the election? #pothole", "politics"),
        ("Rasism på bussen igen, gör något", "discrimination"),
        ("Ik stap naar mijn advocaat voor een schadevergoeding voor mijn fiets", "legal"),
        ("Journalist here, for an article on the potholes: who can I talk to?", "press"),
        ("Demonstratie op het Kiesplein vanavond", "politics"),
        ("Iedereen naar het Kiesplein", "city term"),
    ],
)
def test_sensitive_posts_go_to_communications(classifier: Classifier, post: str, why: str) -> None:
    result = classifier.classify(post)
    assert result.sensitive, result
    assert result.reason is not None
    assert why in result.reason


def test_a_city_can_switch_the_builtin_sensitive_terms_off() -> None:
    own_only = Classifier(Vocabulary(services=SERVICES, languages=("nl",), builtin_sensitive=False))
    assert not own_only.classify("De wethouder moet het gat in de weg maken").sensitive
    assert own_only.classify("De wethouder moet het gat in de weg maken").is_report


def test_a_higher_threshold_asks_for_more_evidence() -> None:
    post = "pothole on Main Street"
    assert Classifier(VOCABULARY).classify(post).is_report
    strict = Vocabulary(services=SERVICES, languages=("en",), report_threshold=0.9)
    assert not Classifier(strict).classify(post).is_report


# -- models -----------------------------------------------------------------------------------

# Words people use that are not in the city's keywords: only the history can teach them.
HISTORY_WORDS = {
    "pothole": ["asfalt", "scheur", "verzakt", "tegels", "stoeprand", "fietspad", "bult"],
    "streetlight": ["lampje", "flikkert", "licht", "donker", "paal", "brandt", "schijnt"],
    "waste": ["zakken", "matras", "bankstel", "rommel", "stinkt", "meeuwen", "bak"],
}
FILLER = ["bij", "de", "op", "het", "hoek", "school", "al", "dagen", "weer", "graag", "straat"]


def synthetic(service: str, rng: random.Random) -> str:
    words = rng.sample(HISTORY_WORDS[service], 3) + rng.sample(FILLER, 4)
    rng.shuffle(words)
    return " ".join(words)


def test_the_model_of_the_history_beats_keywords_alone() -> None:
    rng = random.Random(7)
    codes = list(HISTORY_WORDS)
    history = [(synthetic(c, rng), c) for c in codes for _ in range(40)]
    held_out = [(synthetic(c, rng), c) for c in codes for _ in range(20)]
    model = train_service_model(history, VOCABULARY)
    assert model is not None
    assert model.examples == 120
    trained, keywords = Classifier(VOCABULARY, model), Classifier(VOCABULARY)

    def accuracy(classifier: Classifier) -> float:
        right = 0
        for post, code in held_out:
            scores = classifier.service_scores(post)
            right += bool(scores) and max(scores, key=scores.__getitem__) == code
        return right / len(held_out)

    assert accuracy(keywords) < 0.2
    assert accuracy(trained) > 0.9
    assert "flikkert" in " ".join(model.indicative)
    # The learned words also say "report": a post with only those words becomes a ticket.
    result = trained.classify("Het lampje op de hoek flikkert en is donker")
    assert result.is_report
    assert result.service_code == "streetlight"
    assert train_service_model(history[:5], VOCABULARY) is None  # too little history


def test_a_report_model_from_screened_posts() -> None:
    rng = random.Random(3)
    reports = [f"{synthetic(c, rng)} kapot" for c in HISTORY_WORDS for _ in range(20)]
    chat = [
        f"{w} {rng.choice(['concert', 'markt', 'festival', 'zomer'])} vanavond"
        for w in ("leuk", "mooi", "gezellig", "fijn")
        for _ in range(15)
    ]
    model = train_report_model(
        [(t, True) for t in reports] + [(t, False) for t in chat], VOCABULARY
    )
    assert model is not None
    classifier = Classifier(VOCABULARY, report_model=model)
    assert classifier.classify("leuk festival vanavond op de markt").is_report is False
    assert classifier.classify("matras en zakken bij de bak, stinkt").is_report is True
    assert train_report_model([("x", True)], VOCABULARY) is None  # one class: nothing to learn


# -- per jurisdiction -------------------------------------------------------------------------


def city(**classify: Any) -> dict[str, Any]:
    square = [[[4.55, 53.2], [4.57, 53.2], [4.57, 53.22], [4.55, 53.22], [4.55, 53.2]]]
    data: dict[str, Any] = {
        "kerbside": 1,
        "jurisdiction": {"slug": "kuilstad", "name": "Kuilstad", "languages": ["nl", "en"]},
        "boundary": {"geojson": {"type": "Polygon", "coordinates": square}},
        "services": [
            {
                "code": s.code,
                "names": dict(s.names),
                "keywords": {k: list(v) for k, v in s.keywords.items()},
                "hashtags": {k: list(v) for k, v in s.hashtags.items()},
            }
            for s in SERVICES
        ],
    }
    if classify:
        data["classify"] = classify
    return data


async def apply(db: AsyncSession, data: dict[str, Any]) -> cities.Outcome:
    import yaml

    return await cities.apply(db, cities.load(yaml.safe_dump(data, allow_unicode=True)))


async def file_history(db: AsyncSession, count: int, rng: random.Random) -> None:
    catalog = Catalog()
    for i in range(count):
        code = list(HISTORY_WORDS)[i % 3]
        await submit_report(
            db,
            catalog,
            Submission(
                channel=Channel.app,
                submitter=Submitter(),
                service_code=code,
                place=Place(4.551 + 0.0006 * i, 53.201 + 0.0004 * i, LocationSource.device),
                description=synthetic(code, rng),
            ),
        )


async def jurisdiction_id(db: AsyncSession, slug: str = "kuilstad") -> int:
    found = (
        await db.execute(text("SELECT id FROM jurisdiction WHERE slug = :s"), {"s": slug})
    ).scalar_one()
    return int(found)


async def test_the_city_classifier_learns_its_history_and_follows_changes(
    db: AsyncSession,
) -> None:
    await apply(db, city(sensitive={"en": ["Main Square rally"]}))
    jid = await jurisdiction_id(db)
    empty = await classifier_for(db, jid)
    assert empty.model is None  # no history yet: words only
    assert empty.classify("#kuil op de Markt").service_code == "pothole"
    assert empty.classify("See you at the Main Square rally!").sensitive

    await file_history(db, 30, random.Random(11))
    assert await classifier_for(db, jid) is empty  # the history is looked at every minute
    learned = await classifier_for(db, jid, recheck_after=0)
    assert learned is not empty
    assert learned.model is not None
    assert learned.model.examples == 30
    assert learned.classify("het lampje flikkert, al dagen kapot").service_code == "streetlight"
    assert await classifier_for(db, jid, recheck_after=0) is learned  # nothing changed

    # A changed word list counts at once, without waiting for the minute.
    changed = city(sensitive={"en": ["Main Square rally"]})
    changed["services"][0]["hashtags"]["nl"].append("gatindeweg")
    await apply(db, changed)
    again = await classifier_for(db, jid)
    assert again is not learned
    assert again.classify("#gatindeweg hier").service_code == "pothole"

    with pytest.raises(UnknownJurisdiction):
        await classifier_for(db, 2**31 - 1)


# -- the city file ----------------------------------------------------------------------------


async def test_the_classify_section_round_trips(db: AsyncSession) -> None:
    section = {
        "sensitive": {"nl": ["Kiesplein", "stadsbalkon"], "sv": ["Stortorget"]},
        "builtin_sensitive": False,
        "report_threshold": 0.6,
    }
    first = await apply(db, city(**section))
    assert {c.what: c.action for c in first.changes}["classify"] == "create"
    stored = (
        await db.execute(text("SELECT classify FROM jurisdiction WHERE slug = 'kuilstad'"))
    ).scalar_one()
    assert stored == section
    exported = await cities.export(db, "kuilstad")
    assert exported.classify.model_dump() == section
    assert "stadsbalkon" in cities.dump(exported)
    assert not (await cities.apply(db, exported)).changed

    later = await apply(db, city(report_threshold=0.6))
    change = next(c for c in later.changes if c.what == "classify")
    assert change.action == "update"
    assert change.fields == ("builtin_sensitive", "sensitive")
    vocabulary = (await classifier_for(db, await jurisdiction_id(db))).vocabulary
    assert vocabulary.builtin_sensitive
    assert vocabulary.report_threshold == 0.6
    assert vocabulary.languages == ("nl", "en")


def test_the_classify_section_is_checked() -> None:
    with pytest.raises(cities.CityFileError) as raised:
        cities.load(json.dumps(city(report_threshold=2, colour="red")))
    fields = {e["field"] for e in raised.value.errors or []}
    assert fields == {"classify.report_threshold", "classify.colour"}


# -- kerbside social classify ------------------------------------------------------------------


def kerbside(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", "from app.cli import main; main()", *args],
        capture_output=True,
        text=True,
        env={"KERBSIDE_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        timeout=120,
        check=False,
    )


async def test_the_command_classifies_lines_and_csv_columns(
    database_url: str, committed_db: async_sessionmaker[AsyncSession], tmp_path: Path
) -> None:
    async with committed_db() as session, session.begin():
        await apply(session, city())
    lines = tmp_path / "posts.txt"
    lines.write_text(
        "huge pothole on Vismarkt again #kuil\nBedankt voor de snelle hulp!\n"
        "Gatlyktan vid skolan är trasig\n",
        encoding="utf-8",
    )
    done = kerbside(database_url, "social", "classify", "--jurisdiction", "kuilstad", str(lines))
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["is_report"], r["service_code"], r["language"]) for r in rows] == [
        (True, "pothole", "en"),
        (False, None, "nl"),
        (True, "streetlight", "sv"),
    ]
    assert set(rows[0]) >= {"is_report", "service_code", "confidence", "language", "sentiment"}
    assert rows[1]["sentiment"] > 0

    table = tmp_path / "posts.csv"
    table.write_text(
        'id,text\n1,"Afval gedumpt, al dagen"\n2,"Wethouder moet aftreden"\n', encoding="utf-8"
    )
    done = kerbside(
        database_url,
        "social",
        "classify",
        "--jurisdiction",
        "kuilstad",
        "--column",
        "text",
        str(table),
    )
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert [(r["service_code"], r["sensitive"]) for r in rows] == [("waste", False), (None, True)]

    bare = tmp_path / "bare.csv"
    bare.write_text('1,"#kuil bij de school",x\n', encoding="utf-8")
    done = kerbside(
        database_url,
        "social",
        "classify",
        "--jurisdiction",
        "kuilstad",
        "--no-header",
        "--column",
        "2",
        str(bare),
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["service_code"] == "pothole"

    wrong = kerbside(
        database_url,
        "social",
        "classify",
        "--jurisdiction",
        "kuilstad",
        "--column",
        "body",
        str(table),
    )
    assert wrong.returncode == 2
    assert "no column 'body'" in wrong.stderr
    unknown = kerbside(database_url, "social", "classify", "--jurisdiction", "nowhere", str(lines))
    assert unknown.returncode == 2
    assert "no jurisdiction 'nowhere'" in unknown.stderr


def test_huge_mixed_and_hostile_texts(classifier: Classifier) -> None:
    huge = "kuil " * 200_000 + "#kuil"  # a megabyte: read up to 5,000 characters
    result = classifier.classify(huge)
    assert result.is_report
    assert result.service_code == "pothole"
    mixed = "\u202bהכביש שבור\u202c de lantaarnpaal bij de brug is kapot \u200d🙄"  # noqa: RUF001
    result = classifier.classify(mixed)
    assert result.service_code == "streetlight"
    assert result.sentiment < 0
    for hostile in ("\x00\x00", "#", "@@@", "http://x.example/kuil", "\u200f\u200e", "ـــ"):
        assert not classifier.classify(hostile).is_report
