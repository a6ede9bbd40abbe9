//! Rooms: named groups of connections, the fan-out of `SEND #room`.
//!
//! A room exists while it has members. The table maps a room's folded name
//! to its `Room`; each room keeps its members as a copy-on-write snapshot
//! (`Arc<Vec<Arc<Conn>>>`), so a room message takes one read lock and one
//! reference count, then pushes to a plain slice: the same cost as
//! `SEND *` over the registry's snapshot.
//!
//! Joins, parts and leaves take `changes`, a mutex only they use (never
//! message routing), so a connection's room list and the rooms' member
//! lists always agree, and a connection that is closing is never added to
//! a room after it has left all of them. No map guard is held past the
//! method that took it.

use crate::core::conn::{Conn, Membership};
use dashmap::DashMap;
use parking_lot::{Mutex, RwLock};
use protocol::{ErrorCode, MAX_NAME_LEN};
use std::sync::Arc;

/// Members of a room at one moment.
pub(crate) type Members = Arc<Vec<Arc<Conn>>>;

/// One room.
pub(crate) struct Room {
    /// Unique for the broker's lifetime (a room recreated later is
    /// another room): what a member's `Membership` and a sender's
    /// receipt scope name.
    pub id: u64,
    /// The name as first created (`#Rust`), shown in every frame.
    pub name: Box<str>,
    /// The connection that created it: its operator (`@` on IRC) while it
    /// stays. Nobody else becomes one (there is nothing an operator can do
    /// yet, and a mark that moved silently would confuse IRC clients). 0
    /// (nobody) for a room made here for a joiner while it had members on
    /// other nodes: its founder is there.
    pub creator: u64,
    members: RwLock<Members>,
}

impl Room {
    /// Everyone in the room now.
    pub fn members(&self) -> Members {
        Arc::clone(&self.members.read())
    }
}

/// Why a join or part was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RoomError {
    /// Already a member (`ALREADY_IN_ROOM`).
    AlreadyIn,
    /// Not a member (`NOT_IN_ROOM`).
    NotIn,
    /// At `max_rooms_per_user` (`TOO_MANY_ROOMS`).
    TooMany,
    /// The connection is closing: nothing to do.
    Closing,
}

impl RoomError {
    /// The wire error code, if the client is told.
    pub fn code(self) -> Option<ErrorCode> {
        match self {
            RoomError::AlreadyIn => Some(ErrorCode::AlreadyInRoom),
            RoomError::NotIn => Some(ErrorCode::NotInRoom),
            RoomError::TooMany => Some(ErrorCode::TooManyRooms),
            RoomError::Closing => None,
        }
    }
}

/// What a join did.
pub(crate) struct Joined {
    /// The room (its shown name).
    pub room: Arc<Room>,
    /// The members before the joiner: who is told `JOINED`.
    pub others: Members,
}

/// Every room.
pub(crate) struct Rooms {
    by_name: DashMap<Box<str>, Arc<Room>>,
    changes: Mutex<()>,
    next_id: std::sync::atomic::AtomicU64,
}

/// Folds a room name into a stack buffer for lookups without allocating;
/// `None` if it is too long to be a room.
pub(crate) fn fold_room<'b>(room: &str, buf: &'b mut [u8; MAX_NAME_LEN + 1]) -> Option<&'b str> {
    let bytes = room.as_bytes();
    let dst = buf.get_mut(..bytes.len())?;
    for (d, s) in dst.iter_mut().zip(bytes) {
        *d = s.to_ascii_lowercase();
    }
    std::str::from_utf8(dst).ok()
}

impl Rooms {
    /// No rooms.
    pub fn new() -> Rooms {
        Rooms {
            by_name: DashMap::new(),
            changes: Mutex::new(()),
            next_id: std::sync::atomic::AtomicU64::new(1),
        }
    }

    /// Adds `conn` to `room` (a valid room name), creating it if needed.
    /// `before_publish` runs with the joiner counted but not yet visible to
    /// senders, given the room and the new member count: the caller queues
    /// `OK JOIN` there, so it comes before any message of the room.
    /// `founds`: a joiner who creates the room here is its creator (false
    /// in a cluster when the room has members on other nodes).
    /// `clock` reads the message-id counter; it is read once the joiner is
    /// visible, for the receipts of the room's messages.
    pub fn join(
        &self,
        room: &str,
        conn: &Arc<Conn>,
        max_rooms: usize,
        founds: bool,
        clock: impl Fn() -> u64,
        before_publish: impl FnOnce(&Room, usize),
    ) -> Result<Joined, RoomError> {
        let folded = room.to_ascii_lowercase();
        let _changes = self.changes.lock();
        if conn.is_closing() {
            return Err(RoomError::Closing);
        }
        {
            let mine = conn.rooms.lock();
            if mine.iter().any(|m| *m.folded == *folded) {
                return Err(RoomError::AlreadyIn);
            }
            if mine.len() >= max_rooms {
                return Err(RoomError::TooMany);
            }
        }
        let entry = self
            .by_name
            .entry(folded.clone().into_boxed_str())
            .or_insert_with(|| {
                Arc::new(Room {
                    id: self
                        .next_id
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed),
                    name: room.into(),
                    creator: if founds { conn.id } else { 0 },
                    members: RwLock::new(Arc::new(Vec::new())),
                })
            });
        let the_room = Arc::clone(&entry);
        drop(entry);
        let others = the_room.members();
        let mut next = Vec::with_capacity(others.len() + 1);
        next.extend(others.iter().cloned());
        next.push(Arc::clone(conn));
        before_publish(&the_room, next.len());
        *the_room.members.write() = Arc::new(next);
        let mut mine = conn.rooms.lock();
        // Room for this one only: most users are in a room or two, and a
        // vector's first growth would make room for four.
        mine.reserve_exact(1);
        mine.push(Membership {
            folded: folded.into_boxed_str(),
            room: the_room.id,
            since: clock(),
        });
        drop(mine);
        Ok(Joined {
            room: the_room,
            others,
        })
    }

    /// Takes `conn` out of `room`; returns the room and who is left in it
    /// (to be told `PARTED`). The room goes when its last member does.
    pub fn part(&self, room: &str, conn: &Arc<Conn>) -> Result<(Arc<Room>, Members), RoomError> {
        let mut buf = [0u8; MAX_NAME_LEN + 1];
        let folded = fold_room(room, &mut buf).ok_or(RoomError::NotIn)?;
        let _changes = self.changes.lock();
        {
            let mut mine = conn.rooms.lock();
            let Some(i) = mine.iter().position(|m| *m.folded == *folded) else {
                return Err(RoomError::NotIn);
            };
            mine.swap_remove(i);
        }
        let the_room = self
            .remove_member(folded, conn.id)
            .ok_or(RoomError::NotIn)?;
        let left = the_room.members();
        Ok((the_room, left))
    }

    /// Takes a closing connection out of every room it is in (its rooms'
    /// members are told `LEFT` by the caller, not `PARTED`). Returns the ids
    /// of the members it shared a room with, sorted.
    pub fn leave_all(&self, conn: &Conn) -> Vec<u64> {
        let _changes = self.changes.lock();
        let mine = std::mem::take(&mut *conn.rooms.lock());
        let mut mates = Vec::new();
        for m in mine.iter() {
            if let Some(room) = self.remove_member(&m.folded, conn.id) {
                mates.extend(room.members().iter().map(|c| c.id));
            }
        }
        mates.sort_unstable();
        mates.dedup();
        mates
    }

    /// Removes member `id` from the room `folded`; drops the room if it is
    /// empty now. Called under `changes`.
    fn remove_member(&self, folded: &str, id: u64) -> Option<Arc<Room>> {
        let room = self.by_name.get(folded).map(|r| Arc::clone(&r))?;
        let now = room.members();
        let next: Vec<Arc<Conn>> = now.iter().filter(|c| c.id != id).cloned().collect();
        let empty = next.is_empty();
        *room.members.write() = Arc::new(next);
        if empty {
            self.by_name.remove(folded);
        }
        Some(room)
    }

    /// The room `room` if `conn` is in it.
    pub fn member_of(&self, room: &str, conn: &Conn) -> Option<Arc<Room>> {
        let mut buf = [0u8; MAX_NAME_LEN + 1];
        let folded = fold_room(room, &mut buf)?;
        if !conn.rooms.lock().iter().any(|m| *m.folded == *folded) {
            return None;
        }
        self.by_name.get(folded).map(|r| Arc::clone(&r))
    }

    /// The room called `room` (any case), if it exists.
    pub fn get(&self, room: &str) -> Option<Arc<Room>> {
        let mut buf = [0u8; MAX_NAME_LEN + 1];
        let folded = fold_room(room, &mut buf)?;
        self.by_name.get(folded).map(|r| Arc::clone(&r))
    }

    /// True if a room called `room` (any case) exists.
    pub fn exists(&self, room: &str) -> bool {
        self.get(room).is_some()
    }

    /// Every room's shown name, sorted by its folded form.
    pub fn names_sorted(&self) -> Vec<String> {
        let mut rooms: Vec<(Box<str>, String)> = self
            .by_name
            .iter()
            .map(|e| (e.key().clone(), e.value().name.to_string()))
            .collect();
        rooms.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        rooms.into_iter().map(|(_, n)| n).collect()
    }

    /// How many rooms exist.
    pub fn len(&self) -> usize {
        self.by_name.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]
    use super::*;

    fn conn(id: u64) -> Arc<Conn> {
        Conn::new(
            id,
            0,
            0,
            "127.0.0.1:1".parse().unwrap(),
            crate::core::conn::Door::Native,
            1 << 20,
        )
    }

    #[test]
    fn a_membership_takes_room_for_one() {
        let rooms = Rooms::new();
        let a = conn(1);
        rooms.join("#a", &a, 50, true, || 0, |_, _| {}).unwrap();
        assert_eq!(a.rooms.lock().capacity(), 1);
        rooms.join("#b", &a, 50, true, || 0, |_, _| {}).unwrap();
        assert_eq!(a.rooms.lock().capacity(), 2);
    }

    #[test]
    fn join_part_and_the_room_goes_with_its_last_member() {
        let rooms = Rooms::new();
        let (a, b) = (conn(1), conn(2));
        let mut seen = 0;
        let j = rooms
            .join("#Rust", &a, 50, true, || 0, |_, n| seen = n)
            .unwrap();
        assert_eq!((seen, j.others.len(), &*j.room.name), (1, 0, "#Rust"));
        // Case-insensitive, shown as first created.
        let j = rooms
            .join("#rust", &b, 50, true, || 0, |_, n| seen = n)
            .unwrap();
        assert_eq!((seen, j.others.len(), &*j.room.name), (2, 1, "#Rust"));
        assert!(matches!(
            rooms.join("#RUST", &b, 50, true, || 0, |_, _| {}),
            Err(RoomError::AlreadyIn)
        ));
        assert_eq!(rooms.names_sorted(), vec!["#Rust".to_string()]);
        let (room, left) = rooms.part("#RuSt", &a).unwrap();
        assert_eq!((&*room.name, left.len()), ("#Rust", 1));
        assert!(rooms.member_of("#rust", &a).is_none());
        assert!(rooms.member_of("#rust", &b).is_some());
        assert!(matches!(rooms.part("#rust", &a), Err(RoomError::NotIn)));
        rooms.leave_all(&b);
        assert_eq!(rooms.len(), 0);
        // Recreated by someone else: shown as they wrote it.
        let j = rooms.join("#RUST", &a, 50, true, || 0, |_, _| {}).unwrap();
        assert_eq!(&*j.room.name, "#RUST");
    }

    #[test]
    fn at_most_max_rooms_per_connection_and_none_once_closing() {
        let rooms = Rooms::new();
        let a = conn(1);
        rooms.join("#a", &a, 2, true, || 0, |_, _| {}).unwrap();
        rooms.join("#b", &a, 2, true, || 0, |_, _| {}).unwrap();
        assert!(matches!(
            rooms.join("#c", &a, 2, true, || 0, |_, _| {}),
            Err(RoomError::TooMany)
        ));
        a.begin_close(crate::metrics::CloseReason::Quit);
        rooms.leave_all(&a);
        assert!(matches!(
            rooms.join("#d", &a, 2, true, || 0, |_, _| {}),
            Err(RoomError::Closing)
        ));
        assert_eq!(rooms.len(), 0);
    }
}
