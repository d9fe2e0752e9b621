"""Preference rows (pairs and KTO) as a track of the data stage: reading rows (`rows`), encoding both
branches through the one encoder (`encode`), their checks (`preflight`), what `tuneforge data` shows
(`report`) and the track itself (`track`)."""
