"""Social intake: posts that tag the city become located, de-duplicated tickets (docs/social.md)."""
