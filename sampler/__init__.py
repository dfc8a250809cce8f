"""Sample POS/CRM profile-change events for demos and tests (``profile-sync produce-sample``)."""
