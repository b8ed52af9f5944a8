"""Talk of the town: what many people say at once (spikes), what they talk about more than
usual (trends), and how they feel about it (sentiment, satisfaction after a fix)."""
