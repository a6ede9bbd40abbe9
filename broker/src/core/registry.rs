//! The routing core: who is online, by case-folded name.
//!
//! A `DashMap` (sharded locks) from folded name to connection handle, plus a
//! versioned snapshot of everyone for `SEND *`, `JOINED` and `LEFT`, so a
//! broadcast iterates a plain slice and holds no map guard while it pushes.
//! Every map guard here is dropped before the method returns (dashmap
//! deadlocks come from holding one across another map call).
//!
//! Joins and leaves also take `membership`, a plain mutex that only they
//! use (never message routing): a name is checked, its `OK NAME` queued and
//! only then made visible, all under it, so a new user's first frame is
//! always its `OK NAME`, and everyone sees `JOINED`/`LEFT` in one order.

use crate::core::conn::Conn;
use dashmap::mapref::entry::Entry;
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use protocol::{fold_name, MAX_NAME_LEN};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

/// Everyone online at one version of the registry.
pub(crate) struct Snapshot {
    version: u64,
    /// The connections, in no particular order.
    pub conns: Vec<Arc<Conn>>,
}

/// One registered user: the handle (whose `name()` is the name as given;
/// the key is it folded).
struct Member {
    conn: Arc<Conn>,
}

/// Registered users.
pub(crate) struct Registry {
    by_name: DashMap<Box<str>, Member>,
    version: AtomicU64,
    snapshot: RwLock<Arc<Snapshot>>,
    /// Held across a join or a leave (see the module docs).
    pub membership: Mutex<()>,
    /// The most users registered here at once since the start (IRC's
    /// `265`).
    peak: AtomicUsize,
    /// The most users seen in the whole chat (every node) by `LUSERS`.
    global_peak: AtomicUsize,
    /// How many users here are marked away (IRC `AWAY`): while none is, a
    /// `PRIVMSG` to a nick skips looking its recipient up again for a
    /// `301`. A hint only: a miscount costs a lookup, never a wrong answer.
    away: AtomicUsize,
}

/// `protocol::fold_name` into a stack buffer, for lookups without
/// allocating; `None` if it is too long to be anyone's name.
fn fold_into<'b>(name: &str, buf: &'b mut [u8; MAX_NAME_LEN]) -> Option<&'b str> {
    let bytes = name.as_bytes();
    let dst = buf.get_mut(..bytes.len())?;
    for (d, s) in dst.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(dst).ok()
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Registry {
        Registry {
            by_name: DashMap::new(),
            version: AtomicU64::new(1),
            snapshot: RwLock::new(Arc::new(Snapshot {
                version: 0,
                conns: Vec::new(),
            })),
            membership: Mutex::new(()),
            peak: AtomicUsize::new(0),
            global_peak: AtomicUsize::new(0),
            away: AtomicUsize::new(0),
        }
    }

    /// Registers `conn` under `name` unless the name (folded) is taken.
    pub fn insert(&self, name: &str, conn: &Arc<Conn>) -> bool {
        let inserted = match self.by_name.entry(fold_name(name).into_boxed_str()) {
            Entry::Occupied(_) => false,
            Entry::Vacant(v) => {
                debug_assert_eq!(conn.name(), Some(name), "set_name comes first");
                v.insert(Member {
                    conn: Arc::clone(conn),
                });
                true
            }
        };
        if inserted {
            self.version.fetch_add(1, Ordering::AcqRel);
            self.peak.fetch_max(self.by_name.len(), Ordering::Relaxed);
        }
        inserted
    }

    /// True if `name` (any case) is registered.
    pub fn contains(&self, name: &str) -> bool {
        let mut buf = [0u8; MAX_NAME_LEN];
        fold_into(name, &mut buf).is_some_and(|folded| self.by_name.contains_key(folded))
    }

    /// Removes `name` if it still belongs to connection `id`; true if it
    /// did.
    pub fn remove(&self, name: &str, id: u64) -> bool {
        let removed = self
            .by_name
            .remove_if(&*fold_name(name), |_, m| m.conn.id == id);
        let Some((_, member)) = removed else {
            return false;
        };
        self.version.fetch_add(1, Ordering::AcqRel);
        if let Some(info) = member.conn.irc_info() {
            self.note_away(info.set_away(None));
        }
        true
    }

    /// Counts a user going away (`delta` 1) or coming back (-1).
    pub fn note_away(&self, delta: isize) {
        match delta {
            1 => {
                self.away.fetch_add(1, Ordering::Relaxed);
            }
            -1 => {
                let _ = self
                    .away
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
            }
            _ => {}
        }
    }

    /// False only while nobody here is marked away.
    pub fn anyone_away(&self) -> bool {
        self.away.load(Ordering::Relaxed) > 0
    }

    /// The connection registered under `name` (any case).
    pub fn get(&self, name: &str) -> Option<Arc<Conn>> {
        let mut buf = [0u8; MAX_NAME_LEN];
        let folded = fold_into(name, &mut buf)?;
        self.by_name.get(folded).map(|m| Arc::clone(&m.conn))
    }

    /// Number of registered users.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }

    /// The most users registered here at once since the start.
    pub fn peak(&self) -> usize {
        self.peak.load(Ordering::Relaxed)
    }

    /// Records `now` users in the whole chat and returns the most seen: the
    /// cluster keeps no global peak, so this node's view of it is used
    /// (never below its own peak).
    pub fn global_peak(&self, now: usize) -> usize {
        let before = self.global_peak.fetch_max(now, Ordering::Relaxed);
        before.max(now).max(self.peak())
    }

    /// Everyone online now. Rebuilt only after a change.
    pub fn everyone(&self) -> Arc<Snapshot> {
        let version = self.version.load(Ordering::Acquire);
        {
            let snap = self.snapshot.read();
            if snap.version == version {
                return Arc::clone(&snap);
            }
        }
        // Collect first (map guards only), then publish under the lock.
        let conns: Vec<Arc<Conn>> = self
            .by_name
            .iter()
            .map(|e| Arc::clone(&e.value().conn))
            .collect();
        let fresh = Arc::new(Snapshot { version, conns });
        let mut slot = self.snapshot.write();
        if slot.version < version {
            *slot = Arc::clone(&fresh);
        }
        fresh
    }

    /// Display names sorted by their lower-case form.
    pub fn names_sorted(&self) -> Vec<String> {
        let mut names: Vec<(Box<str>, String)> = self
            .by_name
            .iter()
            .map(|e| {
                let shown = e.value().conn.name().unwrap_or(e.key());
                (e.key().clone(), shown.to_string())
            })
            .collect();
        names.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        names.into_iter().map(|(_, n)| n).collect()
    }
}
