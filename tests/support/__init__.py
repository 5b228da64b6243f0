"""Helpers shared by the test tiers: real servers, test workers, waiting without sleeping."""
