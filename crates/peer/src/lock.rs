//! [`lock`]: how the connection's tables are locked.

use std::sync::{Mutex, MutexGuard, PoisonError};

/// Locks a table. A panic while a lock was held cannot leave a table half-updated (each
/// update is a single map or queue operation), so a poisoned lock is still usable.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
