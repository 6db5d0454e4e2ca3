"""The gateway's store watcher ignores the event sender's cursors and lock (.events/), which change at every
delivery, as it ignores .monitoring/ and .retrain/."""
from __future__ import annotations

from watchfiles import Change

from modelstore.file_feed import StoreFilter


def test_the_store_watcher_ignores_event_cursors(tmp_path):
    keep = StoreFilter()
    root = tmp_path / "models"
    assert not keep(Change.modified, str(root / ".events" / "ops.json"))
    assert not keep(Change.added, str(root / ".events" / ".ops.json.abc123.tmp"))
    assert not keep(Change.added, str(root / ".events"))
    assert keep(Change.modified, str(root / "events.toml"))  # harmless: a reload finds nothing changed
    assert keep(Change.modified, str(root / "registry.json"))
