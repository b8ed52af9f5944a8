"""Linked accounts: a signed-in citizen links a social or messaging account of their own and
hears there, with their consent, that there is news about their report (issue 20, Karlstad).
See docs/notifications.md, "Notices on your own account"."""
