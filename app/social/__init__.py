"""The social intake: posts and messages from social platforms turned into reports."""
