"""The carbon-aware scheduler: deferred jobs planned into the cleanest grid hours before their deadline, then released."""
