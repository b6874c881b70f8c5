"""The platform-neutral core: rooms, invites, admission policy and the audit trail."""
