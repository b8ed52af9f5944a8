"""Which language a post is in, offline: stop-word profiles and a few letters.

Each profile is the commonest function words of its language (written out by hand from
general knowledge of each language, not from a data set). A post's words vote for every
profile that holds them; letters only one language uses (``ij`` in Dutch, ``å`` and ``ä`` in
Swedish, ``ø`` and ``æ`` in Danish) add a vote. Too few votes, or a tie between languages the
city does not use, is ``und`` (undetermined). Arabic and Hebrew script are named by script.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable, Mapping

UNDETERMINED = "und"


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


_PROFILES: dict[str, frozenset[str]] = {
    "en": _words(
        "a about again an and are at be been but by can can't could did do does doesn't don't "
        "for from had has have he her here his how i i'm im in is isn't it it's its just me "
        "my no not of on or our please she should so still thanks that the their there "
        "there's these they this to too very was we were what when where which who why will "
        "with won't would you your "
    ),
    "nl": _words(
        "aan al alweer bedankt bij daar dat de deze die dit door een en er erg even geen "
        "graag haar had hebben heeft heel het hier hij hoe hun ik in is je jij jullie kan "
        "kunnen maar me met mijn moet moeten naar niet nog of ons onze ook op toch u uit uw "
        "van voor waar waarom wanneer waren was wat we weer wel welke wie wij worden wordt "
        "zal ze zij zijn zou "
    ),
    "sv": _words(
        "ar att av blev blir dar de dem den denna deras dessa det detta din ditt du eller en "
        "er ett for fortfarande fran hade han hans har hennes hon hur i igen inga ingen inte "
        "jag kan kunde maste med men min mina mitt mycket nar ni nu och ocksa om pa redan sa "
        "ska skulle snalla som tack till vad var vara varfor varit vem vi vid vilken "
    ),
    "de": _words(
        "aber an auch auf aus bei bitte danke das dein der die dies diese dort du durch ein "
        "eine er fur haben hat hier ich ihr im ist kein keine mein mit nach nicht noch oder "
        "schon sehr sein sie sind und uns unser von wann war waren warum was welche wer "
        "werden wie wir wird wo zu "
    ),
    "da": _words(
        "af allerede de dem den denne der deres det dette din disse dit du eller en er et for "
        "fra han hans har havde hendes her hun hvad hvem hvor hvordan hvorfor hvornar igen "
        "ikke ingen jeg kan kunne med meget men min mine mit og ogsa pa skal skulle som "
        "stadig tak til var ved vi vores "
    ),
    "fr": _words(
        "a au aussi aux avait avec ce ces cette comment dans de des du elle elles encore est "
        "et etait etre ici il ils je la le les leur ma mais merci mes mon ne notre nous ont "
        "ou par pas pour pourquoi quand que qui quoi sont sur tres un une votre vous "
    ),
    "es": _words(
        "a al aqui como con cuando de del donde el ellas ellos en era es esta estas este "
        "estos fue gracias ha han la las los mi mis muy no nosotros nuestro o otra para pero "
        "por que quien ser sobre son su tambien todavia un una usted vez y yo "
    ),
}
# Each function word's languages, for one look-up per word.
_PROFILE_OF: dict[str, tuple[str, ...]] = {
    word: tuple(lang for lang, words in _PROFILES.items() if word in words)
    for word in frozenset().union(*_PROFILES.values())
}
# Letters (after case folding, before diacritics are removed) that point to one language.
_LETTER_HINTS: tuple[tuple[str, str], ...] = (
    ("ij", "nl"),
    ("å", "sv"),
    ("ä", "sv"),
    ("ö", "sv"),
    ("ø", "da"),
    ("æ", "da"),
    ("ß", "de"),
    ("ü", "de"),
    ("ñ", "es"),
    ("ç", "fr"),
    ("è", "fr"),
    ("ê", "fr"),
)
LANGUAGES = tuple(_PROFILES)
MIN_VOTES = 1.5
VOCABULARY_VOTE = 0.75


def stop_words(language: str) -> frozenset[str]:
    """The function words of ``language`` (folded), which say nothing of a topic (trends)."""
    return _PROFILES.get(language, frozenset())


def _script(text: str) -> str | None:
    if text.isascii():
        return None
    counts = {"ar": 0, "he": 0, "latin": 0}
    for char in text[:500]:
        if not char.isalpha():
            continue
        name = unicodedata.name(char, "")
        if name.startswith("ARABIC"):
            counts["ar"] += 1
        elif name.startswith("HEBREW"):
            counts["he"] += 1
        elif name.startswith("LATIN"):
            counts["latin"] += 1
    best = max(counts, key=lambda k: counts[k])
    return None if best == "latin" or counts[best] == 0 else best


def detect(
    tokens: Iterable[str],
    raw: str,
    prefer: Iterable[str] = (),
    vocabulary: Mapping[str, frozenset[str]] | None = None,
) -> str:
    """The language of a post: ``tokens`` are its folded words, ``raw`` its text; ``prefer``
    (the city's languages) breaks ties; ``vocabulary`` (folded content words per language:
    the city's keywords, the sentiment and cue lexicons) adds a smaller vote per word, so a
    short post without function words ("lamp kapot") still finds its language."""
    script = _script(raw)
    if script is not None:
        return script
    votes = dict.fromkeys(_PROFILES, 0.0)
    extra = vocabulary or {}
    for token in tokens:
        for language in _PROFILE_OF.get(token, ()):
            votes[language] += 1.0
        for language, words in extra.items():
            if token in words and language in votes:
                votes[language] += VOCABULARY_VOTE
    lowered = raw.casefold()
    for letters, language in _LETTER_HINTS:
        if letters in lowered:
            votes[language] += 1.0
    preferred = list(prefer)
    ranked = sorted(
        votes,
        key=lambda lang: (votes[lang], lang in preferred, -LANGUAGES.index(lang)),
        reverse=True,
    )
    best = ranked[0]
    if votes[best] < MIN_VOTES:
        return UNDETERMINED
    runner_up = ranked[1]
    if votes[runner_up] == votes[best] and (best not in preferred or runner_up in preferred):
        return UNDETERMINED
    return best
