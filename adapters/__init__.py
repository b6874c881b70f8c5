"""Thin adapters between chat platforms and the core's ``MeetingService``."""
