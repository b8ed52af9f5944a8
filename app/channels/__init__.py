"""Channels: one adapter module per platform (email, FCM, Web Push, SMS, webhook; later X,
Facebook, WhatsApp, Mastodon, Bluesky), each with a configurable base URL. Inbound and
outbound for the same platform live together in its module."""
