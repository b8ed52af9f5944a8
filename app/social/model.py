"""A multinomial naive Bayes text model, trained in-process from the city's own texts.

Small and fast on purpose: training is one pass over the texts (a city's 50,000 latest
report descriptions train in about a second), prediction is one dictionary look-up per
feature, and nothing is downloaded. Features are light stems and stem bigrams
(``features``); labels are service codes, or ``report``/``chat`` for the report model.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from app.social.text import stems

ALPHA = 0.3  # additive smoothing: small, since short texts carry few features


def features(tokens: Sequence[str], language: str) -> list[str]:
    """Stems and stem bigrams of a text's folded words."""
    stemmed = [s for s in stems(tuple(tokens), language) if len(s) > 1 or s.isdigit()]
    grams = [f"{a} {b}" for a, b in itertools.pairwise(stemmed)]
    return stemmed + grams


@dataclass(frozen=True, slots=True)
class NaiveBayes:
    """Log priors, and per feature its log probability under each label."""

    labels: tuple[str, ...]
    log_prior: tuple[float, ...]
    log_likelihood: dict[str, tuple[float, ...]]
    log_unseen: tuple[float, ...]
    counts: dict[str, int]  # texts per label, as trained
    alpha: float = ALPHA

    @classmethod
    def train(
        cls,
        examples: Iterable[tuple[Sequence[str], str]],
        *,
        alpha: float = ALPHA,
        flat_prior: float = 0.3,
    ) -> NaiveBayes:
        """Train on ``(features, label)`` pairs. ``flat_prior`` (0..1) pulls the class
        priors towards uniform: the city's history is mostly one or two services, and a
        post about a rarer one should not lose for that alone."""
        documents: Counter[str] = Counter()
        per_label: dict[str, Counter[str]] = {}
        for feats, label in examples:
            documents[label] += 1
            per_label.setdefault(label, Counter()).update(feats)
        labels = tuple(sorted(documents))
        if not labels:
            raise ValueError("no examples to train on")
        vocabulary = {f for counter in per_label.values() for f in counter}
        size = len(vocabulary) + 1
        total_docs = sum(documents.values())
        log_prior = tuple(
            (1 - flat_prior) * math.log(documents[label] / total_docs)
            + flat_prior * math.log(1 / len(labels))
            for label in labels
        )
        totals = [sum(per_label[label].values()) + alpha * size for label in labels]
        log_likelihood = {
            feature: tuple(
                math.log((per_label[label][feature] + alpha) / totals[i])
                for i, label in enumerate(labels)
            )
            for feature in vocabulary
        }
        log_unseen = tuple(math.log(alpha / t) for t in totals)
        return cls(labels, log_prior, log_likelihood, log_unseen, dict(documents), alpha)

    def known(self, feats: Sequence[str]) -> list[str]:
        return [f for f in feats if f in self.log_likelihood]

    def posterior(self, feats: Sequence[str], *, temperature: float | None = None) -> list[float]:
        """P(label | text) for each of ``labels``, from the features the model has seen.

        Naive Bayes is overconfident (it counts correlated words as independent evidence),
        so the log scores are divided by ``temperature``, by default the square root of the
        number of known features."""
        known = self.known(feats)
        scores = list(self.log_prior)
        for feature in known:
            for i, value in enumerate(self.log_likelihood[feature]):
                scores[i] += value
        scale = temperature if temperature is not None else max(1.0, math.sqrt(len(known)))
        top = max(scores)
        weights = [math.exp((s - top) / scale) for s in scores]
        total = sum(weights)
        return [w / total for w in weights]

    def predict(self, feats: Sequence[str]) -> str:
        scores = self.posterior(feats, temperature=1.0)
        return self.labels[max(range(len(scores)), key=scores.__getitem__)]

    def indicative(self, *, min_count: int = 3, min_share: float = 0.75) -> dict[str, str]:
        """Unigram features that nearly always mean one label (seen ``min_count`` times or
        more, ``min_share`` of their weight under one label): words the city's history
        taught, which count as evidence that a post is a report."""
        out: dict[str, str] = {}
        for feature, values in self.log_likelihood.items():
            if " " in feature:
                continue
            probabilities = [math.exp(v) for v in values]
            total = sum(probabilities)
            best = max(range(len(values)), key=probabilities.__getitem__)
            # Rough count of the feature under its best label, from its smoothed share.
            if probabilities[best] / total >= min_share and self._count(feature, best) >= (
                min_count
            ):
                out[feature] = self.labels[best]
        return out

    def _count(self, feature: str, index: int) -> float:
        value = math.exp(self.log_likelihood[feature][index])
        unseen = math.exp(self.log_unseen[index])
        # (count + alpha) / total = value and alpha / total = unseen → count = alpha·(v/u - 1)
        return self.alpha * (value / unseen - 1)
