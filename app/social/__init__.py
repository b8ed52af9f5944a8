"""Social intake: posts and messages that reach the city's accounts, read and classified (is it a
report, of which service, in which language and mood, is it for the communications team),
and turned into reports."""
