"""How well talk reads moods: precision and recall of the sentiment (``app.talk.words``,
i.e. ``app.social.sentiment``) on labelled civic texts in Dutch, Swedish and English.

The labelled set (``LABELLED``) was written for Kerbside for this measurement: 30 short
texts per language of the kinds talk reads (reports, posts tagging a city, replies to the
city's answers), 10 each meant angry or unhappy (``neg``), matter-of-fact (``neu``) and
pleased (``pos``). Each label was set when the text was written, by what the writer meant,
before the scorer ran on it, and none was changed after. The writer also knows the lexicons'
style (they were written the same way), so expect these figures to be optimistic; slang,
irony and spelling mistakes are rare here and common in real posts.

A real-data proxy, English only: the labelled tweets of ``complaints_social_media_preotiuc``
(complaint or not; ``../shared/data``, never copied into the repository). A complaint is
not the same as a negative mood, so that row says how often "negative" finds complaints,
not how right the mood is.
"""

from __future__ import annotations

import csv
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from app.talk.words import read_text

NEGATIVE, POSITIVE = -0.05, 0.05  # the thresholds the sentiment API uses (negative / positive)
COMPLAINTS_ENV = "KERBSIDE_COMPLAINTS_CSV"
COMPLAINTS_DEFAULT = (
    Path(__file__).resolve().parent.parent.parent
    / "shared/data/complaints_social_media_preotiuc.csv"
)

LABELLED: tuple[tuple[str, str, str], ...] = (
    # -- English --
    ("en", "neg", "This pothole has wrecked my tyre, absolutely disgraceful"),
    ("en", "neg", "Third time I report this broken streetlight and still nothing. Useless!"),
    ("en", "neg", "The bins have not been emptied for two weeks, it stinks and I am furious"),
    ("en", "neg", "Terrible job on the road repair, it is worse than before"),
    ("en", "neg", "Dangerous pavement, my mother fell and got hurt"),
    ("en", "neg", "Why does nobody care about the fly tipping behind the school? Awful"),
    ("en", "neg", "Still waiting for an answer, very disappointed with the council"),
    ("en", "neg", "The park is a mess, broken glass everywhere, horrible"),
    ("en", "neg", "Your app is rubbish, it lost my report again"),
    ("en", "neg", "Flooded street again and nobody came, this is a disaster"),
    ("en", "neu", "Streetlight out on Mill Road near number 12"),
    ("en", "neu", "Pothole at the corner of Station Street and Hill Lane"),
    ("en", "neu", "Graffiti on the bus shelter opposite the library"),
    ("en", "neu", "There is a fallen branch on the cycle path by the river"),
    ("en", "neu", "Bin collection on our street is on Tuesdays, was it moved?"),
    ("en", "neu", "Water coming out of a drain cover on Queen Street"),
    ("en", "neu", "Abandoned bike locked to the railings for a month"),
    ("en", "neu", "When will the road works on the bridge finish?"),
    ("en", "neu", "Sign at the junction is turned the wrong way"),
    ("en", "neu", "Report number K-2026-000123 about the crossing"),
    ("en", "pos", "Thanks for fixing the streetlight so quickly, great work!"),
    ("en", "pos", "The new pavement looks lovely, thank you"),
    ("en", "pos", "Brilliant, the pothole was filled the next day"),
    ("en", "pos", "Really happy with how fast the crew cleared the fallen tree"),
    ("en", "pos", "Great service from the council today, much appreciated"),
    ("en", "pos", "The park looks beautiful after the clean up, well done"),
    ("en", "pos", "Excellent, the graffiti is gone. Thank you so much"),
    ("en", "pos", "Good to see the bins emptied on time again, thanks"),
    ("en", "pos", "Love the new bike lanes, nice job"),
    ("en", "pos", "Quick and friendly answer, very helpful, thanks"),
    # -- Dutch --
    ("nl", "neg", "Dit gat in de weg heeft mijn band kapot gemaakt, schandalig"),
    ("nl", "neg", "Voor de derde keer gemeld en er gebeurt niks. Waardeloos!"),
    ("nl", "neg", "De containers zijn al twee weken niet geleegd, het stinkt vreselijk"),
    ("nl", "neg", "Slecht werk aan de straat, het is erger dan eerst"),
    ("nl", "neg", "Gevaarlijke stoep, mijn moeder is gevallen en gewond"),
    ("nl", "neg", "Niemand doet iets aan het dumpen van afval achter de school, belachelijk"),
    ("nl", "neg", "Nog steeds geen antwoord, erg teleurgesteld in de gemeente"),
    ("nl", "neg", "Het park is een puinhoop, overal kapot glas, verschrikkelijk"),
    ("nl", "neg", "Jullie app is waardeloos, mijn melding is weer weg"),
    ("nl", "neg", "Straat staat weer onder water en niemand komt, een ramp"),
    ("nl", "neu", "Lantaarnpaal uit aan de Molenweg bij nummer 12"),
    ("nl", "neu", "Kuil op de hoek van de Stationsstraat en de Heuvellaan"),
    ("nl", "neu", "Graffiti op het bushokje tegenover de bibliotheek"),
    ("nl", "neu", "Er ligt een afgebroken tak op het fietspad langs de rivier"),
    ("nl", "neu", "Het afval wordt bij ons op dinsdag opgehaald, is dat veranderd?"),
    ("nl", "neu", "Water komt uit een putdeksel in de Koningstraat"),
    ("nl", "neu", "Achtergelaten fiets staat al een maand aan het hek"),
    ("nl", "neu", "Wanneer zijn de werkzaamheden aan de brug klaar?"),
    ("nl", "neu", "Het bord bij de kruising staat de verkeerde kant op"),
    ("nl", "neu", "Melding K-2026-000123 over de oversteekplaats"),
    ("nl", "pos", "Bedankt voor het snel repareren van de lantaarnpaal, top!"),
    ("nl", "pos", "De nieuwe stoep ziet er mooi uit, dank jullie wel"),
    ("nl", "pos", "Geweldig, het gat was de volgende dag al gedicht"),
    ("nl", "pos", "Heel blij met hoe snel de omgevallen boom is opgeruimd"),
    ("nl", "pos", "Prima service van de gemeente vandaag, fijn"),
    ("nl", "pos", "Het park is prachtig na de schoonmaak, goed gedaan"),
    ("nl", "pos", "Super, de graffiti is weg. Hartelijk dank"),
    ("nl", "pos", "Fijn dat de containers weer op tijd geleegd worden, bedankt"),
    ("nl", "pos", "Mooie nieuwe fietspaden, goed werk"),
    ("nl", "pos", "Snel en vriendelijk antwoord, heel behulpzaam, dank u"),
    # -- Swedish --
    ("sv", "neg", "Det här hålet i vägen förstörde mitt däck, skandal"),
    ("sv", "neg", "Tredje gången jag anmäler och ingenting händer. Värdelöst!"),
    ("sv", "neg", "Soporna har inte tömts på två veckor, det luktar fruktansvärt"),
    ("sv", "neg", "Dåligt arbete med vägen, det är värre än förut"),
    ("sv", "neg", "Farlig trottoar, min mamma ramlade och skadade sig"),
    ("sv", "neg", "Ingen bryr sig om dumpningen bakom skolan, bedrövligt"),
    ("sv", "neg", "Fortfarande inget svar, mycket besviken på kommunen"),
    ("sv", "neg", "Parken är ett kaos, krossat glas överallt, hemskt"),
    ("sv", "neg", "Er app är usel, min anmälan försvann igen"),
    ("sv", "neg", "Gatan översvämmad igen och ingen kommer, en katastrof"),
    ("sv", "neu", "Gatlampan är släckt på Kvarnvägen vid nummer 12"),
    ("sv", "neu", "Hål i vägen i hörnet av Stationsgatan och Backvägen"),
    ("sv", "neu", "Klotter på busskuren mittemot biblioteket"),
    ("sv", "neu", "En nedfallen gren ligger på cykelvägen vid ån"),
    ("sv", "neu", "Sophämtningen på vår gata är på tisdagar, har den flyttats?"),
    ("sv", "neu", "Vatten kommer ur en brunn på Drottninggatan"),
    ("sv", "neu", "En övergiven cykel har stått vid räcket i en månad"),
    ("sv", "neu", "När blir vägarbetet vid bron klart?"),
    ("sv", "neu", "Skylten vid korsningen pekar åt fel håll"),
    ("sv", "neu", "Ärende K-2026-000123 om övergångsstället"),
    ("sv", "pos", "Tack för att ni lagade gatlampan så snabbt, toppen!"),
    ("sv", "pos", "Den nya trottoaren ser fin ut, tack"),
    ("sv", "pos", "Fantastiskt, hålet lagades redan dagen efter"),
    ("sv", "pos", "Väldigt glad över hur fort det nedfallna trädet röjdes"),
    ("sv", "pos", "Bra service från kommunen idag, uppskattas"),
    ("sv", "pos", "Parken är jättefin efter städningen, bra jobbat"),
    ("sv", "pos", "Utmärkt, klottret är borta. Tack så mycket"),
    ("sv", "pos", "Skönt att soporna töms i tid igen, tack"),
    ("sv", "pos", "Härliga nya cykelbanor, bra gjort"),
    ("sv", "pos", "Snabbt och vänligt svar, mycket hjälpsamt, tack"),
)


def label_of(score: float | None) -> str:
    if score is None or NEGATIVE <= score <= POSITIVE:
        return "neu"
    return "neg" if score < NEGATIVE else "pos"


def _scores(pairs: Iterable[tuple[str, str]], wanted: str) -> dict[str, Any]:
    tp = fp = fn = 0
    for gold, got in pairs:
        tp += gold == wanted and got == wanted
        fp += gold != wanted and got == wanted
        fn += gold == wanted and got != wanted
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 3), "recall": round(recall, 3), "f1": round(f1, 3)}


def measure_labelled() -> dict[str, Any]:
    """Precision, recall and F1 of "negative" and "positive" per language and overall, the
    accuracy over three classes, and how often the language was detected right."""
    out: dict[str, Any] = {"texts": len(LABELLED), "thresholds": [NEGATIVE, POSITIVE]}
    every: list[tuple[str, str]] = []
    for language in ("en", "nl", "sv"):
        pairs = []
        detected = 0
        for lang, gold, text in LABELLED:
            if lang != language:
                continue
            reading = read_text(text, ["nl", "sv", "en"])
            detected += reading.language == language
            pairs.append((gold, label_of(reading.sentiment)))
        every += pairs
        out[language] = {
            "texts": len(pairs),
            "negative": _scores(pairs, "neg"),
            "positive": _scores(pairs, "pos"),
            "accuracy": round(sum(g == p for g, p in pairs) / len(pairs), 3),
            "language_detected": round(detected / len(pairs), 3),
        }
    out["all"] = {
        "negative": _scores(every, "neg"),
        "positive": _scores(every, "pos"),
        "accuracy": round(sum(g == p for g, p in every) / len(every), 3),
    }
    return out


def measure_complaints(path: Path | None = None) -> dict[str, Any] | None:
    """The English proxy: does "negative" find the tweets labelled as complaints?"""
    path = path or Path(os.environ.get(COMPLAINTS_ENV, COMPLAINTS_DEFAULT))
    if not path.exists():
        return None
    pairs = []
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.reader(handle):
            if len(row) < 3 or row[2] not in ("0", "1"):
                continue
            gold = "neg" if row[2] == "1" else "other"
            got = "neg" if label_of(read_text(row[1], ["en"]).sentiment) == "neg" else "other"
            pairs.append((gold, got))
    return {"file": path.name, "rows": len(pairs), "complaint_as_negative": _scores(pairs, "neg")}


def measure() -> dict[str, Any]:
    return {"labelled": measure_labelled(), "complaints_proxy": measure_complaints()}


if __name__ == "__main__":
    import json

    print(json.dumps(measure(), indent=2))
