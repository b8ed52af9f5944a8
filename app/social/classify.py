"""Is a post a report, of which service, in which language and mood, and is it for the
communications team rather than a ticket?

Evidence, strongest first:

- the city's **hashtags** per service (``#kuil``), exact after folding;
- the city's **keywords** per service and language, and the services' names: single words
  by stem, phrases by their stems in order, and in Dutch and Swedish also inside compounds
  (``lantaarnpaal`` in ``lantaarnpaalnummer``, ``belysning`` in ``gatubelysningen``);
- a **naive Bayes model** trained on the city's own report descriptions (description →
  the service of its ticket; ``app.social.model``), which also yields the words the history
  ties to one service;
- **cues** that someone wants something fixed ("kapot", "still waiting", "fungerar inte"),
  chat cues ("bedankt", "congrats"), and the post's sentiment.

Whether it is a report is a logistic score of that evidence (or, once a city has labelled
posts, a model trained on them: ``train_report_model``); the service is the best combined
score of hashtags, keywords and the model. ``sensitive`` (politics, discrimination,
threats, claims, the press; built in per language, plus the city's ``classify.sensitive``
terms) sends a post to the communications queue, whatever else it is. See docs/social.md.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncSession

from app.core.errors import KerbsideError
from app.social import language as languages
from app.social import sentiment
from app.social.lexicons import CHAT_CUES, REPORT_CUES, SENSITIVE
from app.social.model import NaiveBayes, features
from app.social.text import STEM_LANGUAGES, Words, fold, read, stem, stems
from app.social.vocabulary import Vocabulary, history, history_fingerprint, load_vocabulary

REPORT, CHAT = "report", "chat"
COMPOUND_LANGUAGES = ("nl", "sv", "de", "da")
MIN_COMPOUND = 4  # letters a keyword needs to be found inside a longer word
# Weights of the evidence (set by hand on the project's own example posts, see tests).
HASHTAG_WEIGHT = 3.0
PHRASE_WEIGHT = 2.0
KEYWORD_WEIGHT = 1.0
COMPOUND_WEIGHT = 0.8
MODEL_WEIGHT = 4.0
REPORT_BIAS = -1.3


@dataclass(frozen=True, slots=True)
class Classification:
    is_report: bool
    service_code: str | None
    confidence: float  # 0..1: how sure the decision (report and service, or not a report) is
    language: str  # "en" | "nl" | "sv" | ... | "und"
    sentiment: float  # -1..1
    sensitive: bool  # political / non-administrative: communications queue, never a ticket
    reason: str | None  # why not a report, or why sensitive

    def as_dict(self) -> dict[str, object]:
        return {
            "is_report": self.is_report,
            "service_code": self.service_code,
            "confidence": round(self.confidence, 3),
            "language": self.language,
            "sentiment": round(self.sentiment, 3),
            "sensitive": self.sensitive,
            "reason": self.reason,
        }


class UnknownJurisdiction(KerbsideError):
    status, slug, title = 404, "unknown-jurisdiction", "No such jurisdiction"


# -- word lists as stems ---------------------------------------------------------------------


@dataclass(slots=True)
class _Terms:
    """Terms of one language as stems: single words, and phrases by their first stem."""

    single: dict[str, list[str]] = field(default_factory=dict)
    phrases: dict[str, list[tuple[tuple[str, ...], str]]] = field(default_factory=dict)
    compounds: dict[str, list[str]] = field(default_factory=dict)

    def add(self, term: str, language: str, label: str, *, compounds: bool = False) -> None:
        parts = tuple(stem(w, language) for w in read(term).tokens)
        if not parts:
            return
        if len(parts) == 1:
            self.single.setdefault(parts[0], []).append(label)
            if compounds and len(parts[0]) >= MIN_COMPOUND:
                self.compounds.setdefault(parts[0], []).append(label)
        else:
            self.phrases.setdefault(parts[0], []).append((parts, label))

    def find(self, stemmed: Sequence[str], *, compounds: bool = False) -> Iterator[tuple[str, str]]:
        """(kind, label) per hit: kind is "word", "phrase" or "compound"."""
        for i, word in enumerate(stemmed):
            for label in self.single.get(word, ()):
                yield "word", label
            for parts, label in self.phrases.get(word, ()):
                if tuple(stemmed[i : i + len(parts)]) == parts:
                    yield "phrase", label
            if compounds and self.compounds and len(word) > MIN_COMPOUND + 2:
                yield from (("compound", label) for label in self._inside(word))

    def _inside(self, word: str) -> set[str]:
        # The head of a Germanic compound comes last ("straat|verlichting"), a modifier
        # first ("lantaarnpaal|nummer"); each side keeps three letters or more.
        found: set[str] = set()
        for cut in range(3, len(word) - MIN_COMPOUND + 1):
            found.update(self.compounds.get(word[cut:], ()))
        for cut in range(MIN_COMPOUND, len(word) - 2):
            found.update(self.compounds.get(word[:cut], ()))
        return found


def _terms(lists: Mapping[str, Iterable[str]]) -> dict[str, _Terms]:
    out: dict[str, _Terms] = {}
    for language, terms in lists.items():
        bucket = out.setdefault(language, _Terms())
        for term in terms:
            bucket.add(term, language, term)
    return out


def _sensitive_terms() -> dict[str, _Terms]:
    """The built-in sensitive terms, labelled with their reason ("politics: wethouder")."""
    out: dict[str, _Terms] = {}
    for language, reasons in SENSITIVE.items():
        bucket = out.setdefault(language, _Terms())
        for reason, words in reasons.items():
            for word in words:
                bucket.add(word, language, f"{reason}: {word}")
    return out


_REPORT_CUES = _terms(REPORT_CUES)
_CHAT_CUES = _terms(CHAT_CUES)
_SENSITIVE = _sensitive_terms()


# -- models ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ServiceModel:
    """Description → service, trained on the city's history, and the words it learned."""

    bayes: NaiveBayes
    indicative: dict[str, str]
    examples: int


def _language_of(words: Words, vocabulary: Vocabulary) -> str:
    found = languages.detect(words.tokens, words.raw, vocabulary.languages, _language_words())
    if found in STEM_LANGUAGES:
        return found
    return next((lang for lang in vocabulary.languages if lang in STEM_LANGUAGES), "en")


def train_service_model(
    examples: Iterable[tuple[str, str]], vocabulary: Vocabulary, *, min_examples: int = 20
) -> ServiceModel | None:
    """A model from ``(description, service code)`` pairs; None with too few of them."""
    rows: list[tuple[list[str], str]] = []
    for description, code in examples:
        words = read(description)
        if words.tokens:
            rows.append((features(words.tokens, _language_of(words, vocabulary)), code))
    if len(rows) < min_examples or len({code for _, code in rows}) < 1:
        return None
    bayes = NaiveBayes.train(rows)
    return ServiceModel(bayes, bayes.indicative(), len(rows))


def train_report_model(
    examples: Iterable[tuple[str, bool]], vocabulary: Vocabulary
) -> NaiveBayes | None:
    """Report or not, from labelled posts (``(text, is_report)``): for a city that has
    screened posts; the cues and sentiment enter as features of their own."""
    rows = []
    for text, is_report in examples:
        words = read(text)
        language = languages.detect(
            words.tokens, words.raw, vocabulary.languages, _language_words()
        )
        rows.append((_report_features(words, language, vocabulary), REPORT if is_report else CHAT))
    if len({label for _, label in rows}) < 2:
        return None
    return NaiveBayes.train(rows, flat_prior=0.0)


def _report_features(words: Words, language: str, vocabulary: Vocabulary) -> list[str]:
    stem_language = (
        language
        if language in STEM_LANGUAGES
        else next((lang for lang in vocabulary.languages if lang in STEM_LANGUAGES), "en")
    )
    feats = features(words.tokens, stem_language)
    cue, chat = _cues(words, language)
    mood = sentiment.score(words.tokens, words.emoji, words.raw, language, words.clause_starts)
    feats += ["__cue__"] * min(cue, 3) + ["__chat__"] * min(chat, 3)
    if mood <= -0.3:
        feats.append("__negative__")
    elif mood >= 0.3:
        feats.append("__positive__")
    if "?" in words.raw:
        feats.append("__question__")
    return feats


def _cues(words: Words, language: str) -> tuple[int, int]:
    wanted = [language] if language in _REPORT_CUES else list(_REPORT_CUES)
    cue = chat = 0
    for lang in wanted:
        stemmed = stems(words.tokens, lang)
        cue = max(cue, sum(1 for _ in _REPORT_CUES[lang].find(stemmed)))
        chat = max(chat, sum(1 for _ in _CHAT_CUES[lang].find(stemmed)))
    return cue, chat


_LANGUAGE_WORDS: dict[str, frozenset[str]] = {}


def _language_words() -> dict[str, frozenset[str]]:
    """Content words per language for detection: sentiment and cue lexicons."""
    if not _LANGUAGE_WORDS:
        for lang in sentiment.LEXICONS:
            words = set(sentiment.vocabulary(lang))
            for table in (REPORT_CUES, CHAT_CUES):
                for term in table.get(lang, ()):
                    words.update(read(term).tokens)
            _LANGUAGE_WORDS[lang] = frozenset(words)
    return _LANGUAGE_WORDS


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-max(-30.0, min(30.0, z))))


# -- the classifier --------------------------------------------------------------------------


@dataclass(slots=True)
class _Evidence:
    """What one post says about services, read once."""

    language: str
    mood: float
    words: Words
    scores: dict[str, float] = field(default_factory=dict)
    hashtag_hit: bool = False
    keyword_score: float = 0.0
    learned: int = 0  # words the city's history ties to one service
    _stems: dict[str, list[str]] = field(default_factory=dict)

    def stems_in(self, language: str) -> list[str]:
        if language not in self._stems:
            self._stems[language] = stems(self.words.tokens, language)
        return self._stems[language]


class Classifier:
    """One city's classifier: its vocabulary, and optionally models trained on its history
    (``model``) and on labelled posts (``report_model``). Pure and thread-safe once made."""

    def __init__(
        self,
        vocabulary: Vocabulary,
        model: ServiceModel | None = None,
        report_model: NaiveBayes | None = None,
    ) -> None:
        self.vocabulary = vocabulary
        self.model = model
        self.report_model = report_model
        self._hashtags: dict[str, list[str]] = {}
        self._keywords: dict[str, _Terms] = {}
        keyword_words: dict[str, set[str]] = {}
        for service in vocabulary.services:
            for tags in service.hashtags.values():
                for tag in tags:
                    self._hashtags.setdefault(fold(tag).lstrip("#"), []).append(service.code)
            named = [(lang, [name]) for lang, name in service.names.items()]
            for lang, words in [*service.keywords.items(), *named]:
                bucket = self._keywords.setdefault(lang, _Terms())
                for word in words:
                    bucket.add(word, lang, service.code, compounds=lang in COMPOUND_LANGUAGES)
                    keyword_words.setdefault(lang, set()).update(read(word).tokens)
        self._sensitive: dict[str, _Terms] = (
            dict(_SENSITIVE) if vocabulary.builtin_sensitive else {}
        )
        self._city_sensitive: dict[str, _Terms] = {}
        for lang, terms in vocabulary.sensitive.items():
            bucket = self._city_sensitive.setdefault(lang, _Terms())
            for term in terms:
                bucket.add(term, lang, f"city term: {term}")
        base = _language_words()
        self._language_words = {
            lang: base.get(lang, frozenset()) | frozenset(words)
            for lang, words in keyword_words.items()
        } | {lang: words for lang, words in base.items() if lang not in keyword_words}

    def classify(self, text: str) -> Classification:
        words = read(text)
        if not words.tokens and not words.hashtags:
            mood = sentiment.score((), words.emoji, words.raw, languages.UNDETERMINED)
            return Classification(False, None, 1.0, languages.UNDETERMINED, mood, False, "no words")
        evidence = self._evidence(words)
        language, mood, scores = evidence.language, evidence.mood, evidence.scores
        cue, chat = _cues(words, language)
        repost = words.raw.lstrip().upper().startswith("RT @")
        z = (
            REPORT_BIAS
            + (2.0 if evidence.hashtag_hit else 0.0)
            + 1.4 * min(evidence.keyword_score, 3.0)
            + 0.5 * min(evidence.learned, 3)
            + 0.55 * min(cue, 4)
            - 0.7 * min(chat, 3)
            + 1.2 * max(0.0, -mood)
            - 0.8 * max(0.0, mood)
            - (2.0 if repost else 0.0)
        )
        p_report = _sigmoid(z)
        if self.report_model is not None:
            trained = self.report_model.posterior(
                _report_features(words, language, self.vocabulary)
            )[self.report_model.labels.index(REPORT)]
            p_report = 0.7 * trained + 0.3 * p_report
        is_report = p_report >= self.vocabulary.report_threshold

        service_code: str | None = None
        p_service = 1.0
        total = sum(scores.values())
        if is_report and total > 0:
            service_code = max(sorted(scores), key=scores.__getitem__)
            # Share of the evidence, damped when there is little of it.
            p_service = scores[service_code] / total * (1 - math.exp(-total))
        confidence = p_report * p_service if is_report else 1 - p_report

        reason = None
        sensitive_reason = self._sensitive_reason(language, evidence.stems_in)
        if sensitive_reason is not None:
            reason = f"sensitive ({sensitive_reason})"
        elif not is_report:
            reason = (
                "a repost"
                if repost
                else "thanks or chat"
                if chat > cue and chat
                else "no service words or signs of a problem"
            )
        return Classification(
            is_report=is_report,
            service_code=service_code,
            confidence=max(0.0, min(1.0, confidence)),
            language=language,
            sentiment=mood,
            sensitive=sensitive_reason is not None,
            reason=reason,
        )

    def service_scores(self, text: str) -> dict[str, float]:
        """Each service's evidence in ``text`` (hashtags, keywords, the model), whether or
        not the text reads as a report: for evaluation and for staff's suggestions."""
        return self._evidence(read(text)).scores

    def _evidence(self, words: Words) -> _Evidence:
        language = languages.detect(
            words.tokens, words.raw, self.vocabulary.languages, self._language_words
        )
        evidence = _Evidence(
            language,
            sentiment.score(words.tokens, words.emoji, words.raw, language, words.clause_starts),
            words,
        )
        scores = evidence.scores
        for tag in words.hashtags:
            for code in self._hashtags.get(tag, ()):
                scores[code] = scores.get(code, 0.0) + HASHTAG_WEIGHT
                evidence.hashtag_hit = True
        for lang, bucket in self._keywords.items():
            seen: set[tuple[str, str]] = set()
            stemmed = evidence.stems_in(lang)
            for kind, code in bucket.find(stemmed, compounds=lang in COMPOUND_LANGUAGES):
                if (kind, code) in seen:
                    continue
                seen.add((kind, code))
                weight = {"word": KEYWORD_WEIGHT, "phrase": PHRASE_WEIGHT}.get(
                    kind, COMPOUND_WEIGHT
                )
                scores[code] = scores.get(code, 0.0) + weight
                evidence.keyword_score += weight
        if self.model is not None:
            model_language = language if language in STEM_LANGUAGES else None
            model_language = model_language or next(
                (lang for lang in self.vocabulary.languages if lang in STEM_LANGUAGES), "en"
            )
            feats = features(words.tokens, model_language)
            unigrams = [f for f in feats if " " not in f]
            known = [f for f in unigrams if f in self.model.bayes.log_likelihood]
            if known:
                coverage = len(known) / len(unigrams)
                posterior = self.model.bayes.posterior(feats)
                for code, p in zip(self.model.bayes.labels, posterior, strict=True):
                    scores[code] = scores.get(code, 0.0) + MODEL_WEIGHT * coverage * p
                evidence.learned = sum(1 for f in unigrams if f in self.model.indicative)
        return evidence

    def classify_many(self, texts: Iterable[str]) -> list[Classification]:
        return [self.classify(t) for t in texts]

    def _sensitive_reason(self, language: str, get: Callable[[str], list[str]]) -> str | None:
        builtin = [language] if language in self._sensitive else list(self._sensitive)
        for lang in builtin:
            for _, label in self._sensitive[lang].find(get(lang)):
                return label
        for lang, bucket in self._city_sensitive.items():
            for _, label in bucket.find(get(lang)):
                return label
        return None


# -- per jurisdiction, cached ----------------------------------------------------------------

RECHECK_SECONDS = 60.0


@dataclass(slots=True)
class _Cached:
    vocabulary: str  # the vocabulary's fingerprint
    history: str  # the history's
    checked_at: float  # when the history was last looked at
    classifier: Classifier


_CACHE: dict[int, _Cached] = {}


async def classifier_for(
    session: AsyncSession, jurisdiction_id: int, *, recheck_after: float = RECHECK_SECONDS
) -> Classifier:
    """The jurisdiction's classifier, trained on its history, kept per process. Ask once
    per batch of posts (a poll's page), then classify each: the classifier is pure.

    The city's words are read on every call (a few rows; a keyword added in the admin API
    counts at once); the history, whose check scans the jurisdiction's reports, at most
    every ``recheck_after`` seconds. Either changed: the classifier is built again, its
    model trained off the event loop. Raises ``UnknownJurisdiction``."""
    vocabulary = await load_vocabulary(session, jurisdiction_id)
    if vocabulary is None:
        raise UnknownJurisdiction(f"No jurisdiction {jurisdiction_id}")
    words = vocabulary.fingerprint()
    cached = _CACHE.get(jurisdiction_id)
    now = time.monotonic()
    if cached is not None and cached.vocabulary == words:
        if now - cached.checked_at < recheck_after:
            return cached.classifier
        if cached.history == await history_fingerprint(session, jurisdiction_id):
            cached.checked_at = now
            return cached.classifier
    past = await history_fingerprint(session, jurisdiction_id)
    examples = await history(session, jurisdiction_id)
    # Training is CPU work (about a second for 50,000 descriptions): off the event loop.
    model = await asyncio.to_thread(train_service_model, examples, vocabulary)
    classifier = Classifier(vocabulary, model)
    _CACHE[jurisdiction_id] = _Cached(words, past, now, classifier)
    return classifier
