"""Memory in three tiers (recent, long-term semantic, archive) and fact extraction."""
