"""Test helpers shared across test modules (servers, fixtures)."""
