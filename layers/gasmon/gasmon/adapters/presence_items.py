"""The presence table's kept-alert items, as the writer (`dynamodb_presence`, presence functions)
and the reader (`presence_status`, the query function) both name them.

A device's own item is keyed by its client id; each disconnect alert that went out is kept as an
item keyed `alert#<client id>#<episode id>`. Its own module so that neither function imports the
other's models to agree on it.
"""

ALERT_HISTORY_PREFIX = "alert#"


def alert_history_key(client_id: str, episode_id: str) -> str:
    return f"{ALERT_HISTORY_PREFIX}{client_id}#{episode_id}"
