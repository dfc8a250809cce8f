"""The Target edge: the wire format and Target's limits, the HTTP client, bulk uploads,
urgent updates and their quota, batch status (the only httpx users)."""
