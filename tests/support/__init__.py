"""Test doubles and helpers shared by the suite (fakes, never mocks of our own code)."""
