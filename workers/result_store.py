"""Final results, written once: the store moved to `shared.result_store`, since a storefront's cancel writes
through it too; workers import it from there. This name stays for code that imported it here."""

from shared.result_store import STORE_ONCE_SCRIPT, ResultStore

__all__ = ["STORE_ONCE_SCRIPT", "ResultStore"]
