"""What every engine's transaction (``with store.write() as store:``) does the same way: give the lock back when
the transaction cannot begin, roll back on the way out of a failed block, and run the actions queued for after the
commit. Each engine's class keeps its own begin and commit: they are its hot path, so the shared steps here run
only on failure or when an action is queued."""

from __future__ import annotations


TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, Optional


class Transaction:
    __slots__ = ("store", "begin", "writes")

    driver_error: type[BaseException] = Exception
    """The engine's driver error, which leaves a transaction as the store's ``failed()`` StorageError."""

    store: Any
    begin: Any
    writes: bool

    def _abandon(self) -> None:
        """A transaction that failed to begin: rolled back and the store's lock released."""
        try:
            self.store._rollback()
        finally:
            self.store.lock.release()

    def _roll_back(self, exc: BaseException) -> None:
        """The block raised: roll back, and raise a driver error as the store's StorageError (others go on)."""
        self.store._rollback()
        if isinstance(exc, self.driver_error):
            raise self.store.failed(exc) from exc

    def _run_after_commit(self) -> Optional[BaseException]:
        """Run every action queued for after the commit; the first failure, for the caller to raise."""
        store = self.store
        actions, store._after_commit = store._after_commit, []
        failure: Optional[BaseException] = None
        for action in actions:
            try:
                action()
            except BaseException as error:  # run every action; report the first failure
                failure = failure or error
        return failure
