//! The open database, and its reopening after an I/O failure.
//!
//! redb latches the first I/O error (a full disk, EIO on `fsync`): every
//! later read or write of that handle fails with `PreviousIo`, because
//! after a failed `fsync` nothing in the page cache can be trusted. The
//! file itself still holds the last committed state, so the cure is to
//! close it and open it again. The writer thread does that (and only it,
//! so two never race); readers that see an I/O error only mark the slot,
//! and get a clear "try again" error while it is empty.

use super::{open_db, FILE_NAME};
use crate::{log_debug, log_error, log_info, log_warn};
use parking_lot::RwLock;
use redb::Database;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a reopen waits for readers to let go of the old handle.
const READERS_GRACE: Duration = Duration::from_secs(5);

/// The database handle shared by the store's readers and its writer.
pub(super) struct DbSlot {
    path: PathBuf,
    db: RwLock<Option<Arc<Database>>>,
    broken: AtomicBool,
}

impl DbSlot {
    pub(super) fn new(path: PathBuf, db: Database) -> DbSlot {
        DbSlot {
            path,
            db: RwLock::new(Some(Arc::new(db))),
            broken: AtomicBool::new(false),
        }
    }

    /// The handle, for one transaction (don't keep it: a reopen waits for
    /// it to be dropped).
    pub(super) fn get(&self) -> Result<Arc<Database>, String> {
        self.db.read().clone().ok_or_else(|| {
            "the database is being reopened after a failed write; try again".to_string()
        })
    }

    /// Marks the handle for reopening if `e` is an I/O failure.
    pub(super) fn check(&self, e: &redb::Error) {
        if matches!(e, redb::Error::Io(_) | redb::Error::PreviousIo) {
            self.broken.store(true, Ordering::Release);
        }
    }

    /// True if the handle must be reopened.
    pub(super) fn broken(&self) -> bool {
        self.broken.load(Ordering::Acquire)
    }

    /// Closes the handle and opens the file again (writer thread only).
    /// False if it could not (the slot stays broken; try again later).
    pub(super) fn reopen(&self) -> bool {
        let file = self.path.display();
        log_warn!("store: reopening {file} after an I/O failure");
        let old = self.db.write().take();
        if let Some(old) = old {
            close_when_free(old);
        }
        match open_db(&self.path) {
            Ok(db) => {
                *self.db.write() = Some(Arc::new(db));
                self.broken.store(false, Ordering::Release);
                log_info!("store: {file} reopened");
                true
            }
            Err(e) => {
                log_error!("store: cannot reopen the database: {e}");
                false
            }
        }
    }
}

/// Closes `db` once the readers holding it (for one transaction each) are
/// done, so the file's lock is released before it is opened again.
fn close_when_free(mut db: Arc<Database>) {
    let deadline = Instant::now() + READERS_GRACE;
    loop {
        match Arc::try_unwrap(db) {
            Ok(db) => {
                // It fails as every call on it does now; expected.
                if let Err(e) = db.close() {
                    log_debug!("store: closing the failed {FILE_NAME}: {e}");
                }
                return;
            }
            Err(shared) if Instant::now() < deadline => {
                db = shared;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(_) => {
                log_error!("store: a reader still holds the failed {FILE_NAME}; reopening anyway");
                return;
            }
        }
    }
}
