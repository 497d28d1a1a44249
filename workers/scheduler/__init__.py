"""The carbon-aware scheduler: deferred jobs planned into the cleanest hours before their deadline, then released."""
