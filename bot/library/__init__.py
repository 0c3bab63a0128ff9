"""Personal research tools: each user's saved papers (with notes, export and .bib import), what they
follow, and their personal DM digests. Services here never import discord."""
