"""Events out: every audit entry POSTed to the subscribers of events.toml, signed, retried, resumed from the audit log
after a restart (config, payload, cursor, delivery, sender)."""
