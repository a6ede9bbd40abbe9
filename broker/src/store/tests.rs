//! The store's tests: each opens a real database in its own directory
//! under the system's temp directory.

use super::*;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

/// A fresh directory, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("chat-store-{}-{n}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&self.0, std::fs::Permissions::from_mode(0o700));
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

const LIMITS: Limits = Limits {
    mailbox_max: 1000,
    mailbox_days: 30,
    room_history: 100,
    queue_len: 1024,
};

fn msg(id: u64, from: &str, kind: StoredKind) -> Stored {
    Stored {
        id,
        from: from.to_string(),
        kind,
        ts_ms: now_ms(),
        body: format!("message {id}").into_bytes(),
    }
}

/// Appends and waits for the durable commit.
fn append(store: &Store, to: &[&str], m: Stored) {
    let (tx, rx) = crossbeam_channel::bounded(1);
    let to = to.iter().map(|s| s.to_string()).collect();
    store
        .try_append(to, m, Box::new(move |r| tx.send(r).unwrap()))
        .unwrap();
    rx.recv_timeout(Duration::from_secs(10)).unwrap().unwrap();
}

fn ids(v: &[Stored]) -> Vec<u64> {
    v.iter().map(|m| m.id).collect()
}

/// Waits until a queued history append is written (a call queued behind
/// it returns only after the batch that holds it).
fn flush(store: &Store) {
    store.reserve_ids(0).unwrap();
}

#[test]
fn accounts_create_get_set_delete_list() {
    let dir = TempDir::new("accounts");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    assert_eq!(store.account("alice").unwrap(), None);
    assert!(store.create_account("alice", "Alice", "h1").unwrap());
    assert!(
        !store.create_account("alice", "ALICE", "h2").unwrap(),
        "a duplicate"
    );
    let a = store.account("alice").unwrap().unwrap();
    assert_eq!((a.name.as_str(), a.hash.as_str()), ("Alice", "h1"));
    assert!(a.created_ms.abs_diff(now_ms()) < 60_000);

    assert!(store.set_password("alice", "h3").unwrap());
    assert_eq!(store.account("alice").unwrap().unwrap().hash, "h3");
    assert!(!store.set_password("nobody", "h").unwrap());

    assert!(store.create_account("bob", "bob", "hb").unwrap());
    let names: Vec<String> = store
        .accounts()
        .unwrap()
        .into_iter()
        .map(|a| a.name)
        .collect();
    assert_eq!(names, ["Alice", "bob"]);

    assert!(store.delete_account("alice").unwrap());
    assert!(!store.delete_account("alice").unwrap());
    assert_eq!(store.account("alice").unwrap(), None);
    assert_eq!(store.accounts().unwrap().len(), 1);
}

#[test]
fn passwords_hash_and_verify_through_the_module() {
    let phc = hash_password("hunter2hunter2").unwrap();
    assert!(phc.starts_with("$argon2id$"));
    assert!(verify_password("hunter2hunter2", &phc));
    assert!(!verify_password("hunter2hunter3", &phc));
}

#[test]
fn mailboxes_keep_order_and_are_taken_once() {
    let dir = TempDir::new("mailbox");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    store.create_account("bob", "bob", "h").unwrap();
    append(&store, &["alice"], msg(3, "carol", StoredKind::Direct));
    append(
        &store,
        &["alice", "bob"],
        msg(4, "carol", StoredKind::Multi),
    );
    append(&store, &["bob"], msg(5, "dave", StoredKind::Direct));
    // Ids, not arrival, give the order (a put-back message returns to its place).
    append(&store, &["alice"], msg(2, "dave", StoredKind::Direct));
    assert_eq!(store.stored_count(), 5);

    let a = store.take_mailbox("alice").unwrap();
    assert_eq!(ids(&a), [2, 3, 4]);
    assert_eq!(a[2], msg(4, "carol", StoredKind::Multi).with_ts(a[2].ts_ms));
    assert_eq!(store.stored_count(), 2);
    assert!(
        store.take_mailbox("alice").unwrap().is_empty(),
        "taken once"
    );
    assert_eq!(ids(&store.take_mailbox("bob").unwrap()), [4, 5]);
    assert_eq!(store.stored_count(), 0);
    assert!(store.take_mailbox("nobody").unwrap().is_empty());
}

impl Stored {
    fn with_ts(mut self, ts_ms: u64) -> Stored {
        self.ts_ms = ts_ms;
        self
    }
}

#[test]
fn the_same_id_twice_is_kept_once() {
    let dir = TempDir::new("dup");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    append(&store, &["alice"], msg(7, "bob", StoredKind::Direct));
    append(&store, &["alice"], msg(7, "bob", StoredKind::Direct));
    assert_eq!(store.stored_count(), 1);
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [7]);
}

#[test]
fn only_accounts_get_a_mailbox_and_deleting_empties_it() {
    let dir = TempDir::new("nonaccount");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    append(
        &store,
        &["alice", "ghost"],
        msg(1, "bob", StoredKind::Multi),
    );
    assert_eq!(store.stored_count(), 1);
    assert!(store.take_mailbox("ghost").unwrap().is_empty());

    append(&store, &["alice"], msg(2, "bob", StoredKind::Direct));
    assert!(store.delete_account("alice").unwrap());
    assert_eq!(store.stored_count(), 0);
    append(&store, &["alice"], msg(3, "bob", StoredKind::Direct));
    assert_eq!(store.stored_count(), 0, "not kept for a deleted account");
    // Registering the name again starts with an empty mailbox.
    store.create_account("alice", "alice", "h").unwrap();
    assert!(store.take_mailbox("alice").unwrap().is_empty());
}

#[test]
fn take_sees_every_append_queued_before_it() {
    let dir = TempDir::new("ordering");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    for id in 1..=50 {
        store
            .try_append(
                vec!["alice".into()],
                msg(id, "bob", StoredKind::Direct),
                Box::new(|_| {}),
            )
            .unwrap();
    }
    // No waiting for the commits: the take is queued behind them.
    assert_eq!(
        ids(&store.take_mailbox("alice").unwrap()),
        (1..=50).collect::<Vec<_>>()
    );
}

#[test]
fn past_mailbox_max_the_oldest_are_dropped_and_counted() {
    let dir = TempDir::new("max");
    let limits = Limits {
        mailbox_max: 3,
        ..LIMITS
    };
    let store = Store::open(&dir.0, limits).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    for id in 1..=5 {
        append(&store, &["alice"], msg(id, "bob", StoredKind::Direct));
    }
    assert_eq!(store.stored_count(), 3);
    assert_eq!(store.dropped_count(), 2);
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [3, 4, 5]);

    let store0 = {
        drop(store);
        let dir0 = TempDir::new("max0");
        let s = Store::open(
            &dir0.0,
            Limits {
                mailbox_max: 0,
                ..LIMITS
            },
        )
        .unwrap();
        s.create_account("alice", "alice", "h").unwrap();
        append(&s, &["alice"], msg(1, "bob", StoredKind::Direct));
        (
            s.stored_count(),
            s.dropped_count(),
            s.take_mailbox("alice").unwrap().len(),
        )
    };
    assert_eq!(store0, (0, 1, 0), "mailbox_max 0 keeps nothing");
}

#[test]
fn messages_older_than_mailbox_days_are_dropped() {
    let dir = TempDir::new("days");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    let day = 86_400_000;
    append(
        &store,
        &["alice"],
        msg(1, "bob", StoredKind::Direct).with_ts(now_ms() - 31 * day),
    );
    append(
        &store,
        &["alice"],
        msg(2, "bob", StoredKind::Direct).with_ts(now_ms() - 29 * day),
    );
    // The append of 2 swept 1 from the front already.
    assert_eq!(store.expired_count(), 1);
    assert_eq!(store.stored_count(), 1);
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [2]);

    // An old one behind a newer one is dropped when taken.
    append(&store, &["alice"], msg(4, "bob", StoredKind::Direct));
    append(
        &store,
        &["alice"],
        msg(5, "bob", StoredKind::Direct).with_ts(now_ms() - 40 * day),
    );
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [4]);
    assert_eq!(store.expired_count(), 2);
    assert_eq!(store.stored_count(), 0);
}

#[test]
fn everything_survives_close_and_reopen() {
    let dir = TempDir::new("reopen");
    {
        let store = Store::open(&dir.0, LIMITS).unwrap();
        store.create_account("alice", "Alice", "h").unwrap();
        append(&store, &["alice"], msg(1, "bob", StoredKind::Direct));
        append(
            &store,
            &["alice"],
            msg(2, "bob", StoredKind::Room("#x".into())),
        );
        store
            .try_append_history("#rust", msg(3, "bob", StoredKind::Room("#Rust".into())))
            .unwrap();
        store.reserve_ids(10_000).unwrap();
        store.close();
        // Reads still work after close; changes don't.
        assert!(store.account("alice").unwrap().is_some());
        assert!(store.create_account("carol", "carol", "h").is_err());
        assert_eq!(
            store.try_append(
                vec!["alice".into()],
                msg(9, "bob", StoredKind::Direct),
                Box::new(|_| { unreachable!("not queued, so never called") })
            ),
            Err(Full)
        );
        assert_eq!(
            store.try_append_history("#rust", msg(9, "bob", StoredKind::Direct)),
            Err(Full)
        );
        store.close(); // twice is fine
    }
    let store = Store::open(&dir.0, LIMITS).unwrap();
    assert_eq!(store.account("alice").unwrap().unwrap().name, "Alice");
    assert_eq!(store.stored_count(), 2);
    assert_eq!(store.last_id().unwrap(), 10_000);
    let h = store.histories().unwrap();
    assert_eq!(ids(&h["#rust"]), [3]);
    assert_eq!(h["#rust"][0].kind, StoredKind::Room("#Rust".into()));
    let a = store.take_mailbox("alice").unwrap();
    assert_eq!(ids(&a), [1, 2]);
    assert_eq!(a[1].kind, StoredKind::Room("#x".into()));
}

#[test]
fn done_is_called_after_the_commit() {
    let dir = TempDir::new("done");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    let db = store.slot.get().unwrap();
    let (tx, rx) = crossbeam_channel::bounded(1);
    store
        .try_append(
            vec!["alice".into()],
            msg(1, "bob", StoredKind::Direct),
            Box::new(move |r| {
                // A fresh read snapshot sees only committed data.
                let txn = db.begin_read().unwrap();
                let table = txn.open_table(MAILBOX).unwrap();
                let there = table.get(("alice", 1)).unwrap().is_some();
                tx.send((r, there)).unwrap();
            }),
        )
        .unwrap();
    let (r, there) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(r, Ok(()));
    assert!(there, "done ran before the message was committed");
}

#[test]
fn a_full_queue_is_refused_at_once() {
    let dir = TempDir::new("full");
    let store = Store::open(
        &dir.0,
        Limits {
            queue_len: 1,
            ..LIMITS
        },
    )
    .unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    // Keep the writer busy inside the first job's done.
    let (inside_tx, inside) = crossbeam_channel::bounded(1);
    let (release, release_rx) = crossbeam_channel::bounded::<()>(1);
    store
        .try_append(
            vec!["alice".into()],
            msg(1, "bob", StoredKind::Direct),
            Box::new(move |_| {
                inside_tx.send(()).unwrap();
                let _ = release_rx.recv();
            }),
        )
        .unwrap();
    inside.recv_timeout(Duration::from_secs(10)).unwrap();
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let tx2 = done_tx.clone();
    store
        .try_append(
            vec!["alice".into()],
            msg(2, "bob", StoredKind::Direct),
            Box::new(move |r| tx2.send((2, r)).unwrap()),
        )
        .unwrap();
    let started = Instant::now();
    let refused = store.try_append(
        vec!["alice".into()],
        msg(3, "bob", StoredKind::Direct),
        Box::new(move |r| done_tx.send((3, r)).unwrap()),
    );
    assert_eq!(refused, Err(Full));
    assert_eq!(
        store.try_append_history("#r", msg(4, "bob", StoredKind::Direct)),
        Err(Full)
    );
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "try_append blocked"
    );
    release.send(()).unwrap();
    assert_eq!(
        done_rx.recv_timeout(Duration::from_secs(10)).unwrap(),
        (2, Ok(()))
    );
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [1, 2]);
    // The refused job's done was never called (its sender is gone with it).
    assert!(done_rx.recv_timeout(Duration::from_millis(50)).is_err());
}

#[test]
fn room_history_keeps_the_last_messages() {
    let dir = TempDir::new("history");
    {
        let store = Store::open(
            &dir.0,
            Limits {
                room_history: 3,
                ..LIMITS
            },
        )
        .unwrap();
        for id in 1..=5 {
            store
                .try_append_history("#a", msg(id, "bob", StoredKind::Room("#A".into())))
                .unwrap();
        }
        store
            .try_append_history("#b", msg(6, "bob", StoredKind::Room("#b".into())))
            .unwrap();
        flush(&store);
        let h = store.histories().unwrap();
        assert_eq!(ids(&h["#a"]), [3, 4, 5]);
        assert_eq!(ids(&h["#b"]), [6]);
        let txn = store.slot.get().unwrap().begin_read().unwrap();
        assert_eq!(
            txn.open_table(HISTORY).unwrap().len().unwrap(),
            4,
            "trimmed on disk"
        );
    }
    // Reopened with a smaller room_history: the last ones are read.
    let store = Store::open(
        &dir.0,
        Limits {
            room_history: 2,
            ..LIMITS
        },
    )
    .unwrap();
    let h = store.histories().unwrap();
    assert_eq!(ids(&h["#a"]), [4, 5]);
    assert_eq!(ids(&h["#b"]), [6]);
    // room_history 0 keeps nothing.
    drop(store);
    let store = Store::open(
        &dir.0,
        Limits {
            room_history: 0,
            ..LIMITS
        },
    )
    .unwrap();
    store
        .try_append_history("#c", msg(7, "bob", StoredKind::Room("#c".into())))
        .unwrap();
    flush(&store);
    assert!(store.histories().unwrap().is_empty());
}

#[test]
fn reserved_ids_survive_reopen_and_never_go_back() {
    let dir = TempDir::new("ids");
    {
        let store = Store::open(&dir.0, LIMITS).unwrap();
        assert_eq!(store.last_id().unwrap(), 0);
        store.reserve_ids(10_000).unwrap();
        store.reserve_ids(5_000).unwrap();
        assert_eq!(store.last_id().unwrap(), 10_000);
        store.reserve_ids(20_000).unwrap();
    }
    let store = Store::open(&dir.0, LIMITS).unwrap();
    assert_eq!(store.last_id().unwrap(), 20_000);
}

#[test]
fn unreadable_records_are_skipped_not_fatal() {
    let dir = TempDir::new("badrecord");
    let store = Store::open(&dir.0, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    append(&store, &["alice"], msg(1, "bob", StoredKind::Direct));
    {
        let txn = store.slot.get().unwrap().begin_write().unwrap();
        txn.open_table(MAILBOX)
            .unwrap()
            .insert(("alice", 2), &[9u8, 9, 9][..])
            .unwrap();
        txn.open_table(HISTORY)
            .unwrap()
            .insert(("#r", 1), &[][..])
            .unwrap();
        txn.open_table(ACCOUNTS)
            .unwrap()
            .insert("zed", &[1u8][..])
            .unwrap();
        txn.commit().unwrap();
    }
    append(&store, &["alice"], msg(3, "bob", StoredKind::Direct));
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), [1, 3]);
    assert!(store.histories().unwrap().is_empty());
    assert_eq!(store.accounts().unwrap().len(), 1);
    assert!(store.account("zed").is_err());
    assert!(store.set_password("zed", "h").is_err());
    // The batch that failed on zed did not fail anything else.
    assert!(store.set_password("alice", "h2").unwrap());
}

// ---- open() on bad ground ----

fn open_err(dir: &Path) -> String {
    match Store::open(dir, LIMITS) {
        Ok(_) => panic!("open of {} should fail", dir.display()),
        Err(e) => {
            eprintln!("open error: {e}");
            e
        }
    }
}

#[test]
fn open_on_a_read_only_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("readonly");
    std::fs::create_dir_all(&dir.0).unwrap();
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o500)).unwrap();
    // root (CAP_DAC_OVERRIDE) writes anyway: then the open must just work.
    let probe = dir.0.join("probe");
    let privileged = std::fs::write(&probe, b"x").is_ok();
    let _ = std::fs::remove_file(&probe);
    match Store::open(&dir.0, LIMITS) {
        Ok(_store) => assert!(privileged, "opened a database in a read-only directory"),
        Err(e) => {
            eprintln!("open error: {e}");
            assert!(!privileged, "{e}");
            assert!(e.contains("permission denied"), "{e}");
            assert!(
                e.contains(&dir.0.join(FILE_NAME).display().to_string()),
                "{e}"
            );
        }
    }
    // A data directory that can't be created (its parent is read-only).
    if !privileged {
        let e = open_err(&dir.0.join("sub"));
        assert!(e.contains("cannot create the data directory"), "{e}");
        assert!(e.contains("permission denied"), "{e}");
    }
}

#[test]
fn open_on_a_read_only_file() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new("readonlyfile");
    drop(Store::open(&dir.0, LIMITS).unwrap());
    let file = dir.0.join(FILE_NAME);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o400)).unwrap();
    let privileged = std::fs::OpenOptions::new().write(true).open(&file).is_ok();
    match Store::open(&dir.0, LIMITS) {
        Ok(_) => assert!(privileged),
        Err(e) => {
            eprintln!("open error: {e}");
            assert!(
                e.contains("permission denied") && e.contains(FILE_NAME),
                "{e}"
            );
        }
    }
}

#[test]
fn open_on_files_that_are_not_databases() {
    let garbage: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases: [(&str, Vec<u8>); 4] = [
        ("text", b"this is not a database\n".to_vec()),
        ("garbage", garbage),
        ("zeros", vec![0; 64 * 1024]),
        ("one byte", vec![b'r']),
    ];
    for (name, bytes) in cases {
        let dir = TempDir::new("garbage");
        std::fs::create_dir_all(&dir.0).unwrap();
        std::fs::write(dir.0.join(FILE_NAME), &bytes).unwrap();
        let e = open_err(&dir.0);
        assert!(e.contains(FILE_NAME), "{name}: {e}");
        assert!(
            e.contains("not a chat database") || e.contains("corrupt"),
            "{name}: {e}"
        );
        // Nothing was written over it.
        assert_eq!(
            std::fs::read(dir.0.join(FILE_NAME)).unwrap(),
            bytes,
            "{name}"
        );
    }
}

#[test]
fn open_on_a_damaged_database() {
    let dir = TempDir::new("damaged");
    {
        let store = Store::open(&dir.0, LIMITS).unwrap();
        store.create_account("alice", "alice", "h").unwrap();
        for id in 1..=200 {
            store
                .try_append_history("#r", msg(id, "bob", StoredKind::Direct))
                .unwrap();
        }
        flush(&store);
    }
    let file = dir.0.join(FILE_NAME);
    let good = std::fs::read(&file).unwrap();
    // Cut in half, and flipped bytes all over the data pages: an error or
    // (if redb can still make sense of it) a working store, never a panic.
    let mut flipped = good.clone();
    for i in (4096..flipped.len()).step_by(97) {
        flipped[i] ^= 0x5a;
    }
    for (name, bytes) in [
        ("truncated", good[..good.len() / 2].to_vec()),
        ("flipped", flipped),
    ] {
        std::fs::write(&file, &bytes).unwrap();
        match Store::open(&dir.0, LIMITS) {
            Ok(store) => {
                let _ = store.accounts();
                let _ = store.histories();
            }
            Err(e) => {
                eprintln!("open error ({name}): {e}");
                assert!(e.contains(FILE_NAME), "{name}: {e}");
            }
        }
    }
}

#[test]
fn open_where_the_data_directory_is_a_file() {
    let dir = TempDir::new("notadir");
    std::fs::write(&dir.0, b"x").unwrap();
    let e = open_err(&dir.0);
    assert!(e.contains("cannot create the data directory"), "{e}");
    let _ = std::fs::remove_file(&dir.0);
}

/// Fills the file system holding `path` with one file.
fn fill(path: &Path) {
    use std::io::Write;
    let mut f = std::fs::File::create(path).unwrap();
    let chunk = vec![0x55u8; 4096];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

/// A full disk at start is an error that says so; a disk that fills while
/// running fails the writes that did not fit (their `done` says why, the
/// rest is on disk), and once there is room again the store goes on.
///
/// It needs a small file system of its own (as root):
/// `mount -t tmpfs -o size=1m tmpfs /mnt/small` then
/// `CHAT_SMALL_FS=/mnt/small cargo test -p broker --lib store -- --ignored full_disk`.
#[test]
#[ignore = "needs a small file system: set CHAT_SMALL_FS"]
fn full_disk_is_a_clear_error_and_recoverable() {
    let Some(fs) = std::env::var_os("CHAT_SMALL_FS") else {
        eprintln!("CHAT_SMALL_FS is not set: skipped");
        return;
    };
    let root = PathBuf::from(fs);

    // At start.
    let filler = root.join("filler");
    fill(&filler);
    let e = open_err(&root.join("db1"));
    assert!(e.contains("disk is full") && e.contains("db1"), "{e}");
    std::fs::remove_file(&filler).unwrap();
    let _ = std::fs::remove_dir_all(root.join("db1"));

    // While running.
    let dir = root.join("db2");
    let _ = std::fs::remove_dir_all(&dir);
    let store = Store::open(&dir, LIMITS).unwrap();
    store.create_account("alice", "alice", "h").unwrap();
    fill(&filler);
    let mut written = Vec::new();
    let mut failure = None;
    for id in 1..=10_000 {
        let (tx, rx) = crossbeam_channel::bounded(1);
        let mut m = msg(id, "bob", StoredKind::Direct);
        m.body = vec![b'x'; 16 * 1024];
        store
            .try_append(
                vec!["alice".into()],
                m,
                Box::new(move |r| tx.send(r).unwrap()),
            )
            .unwrap();
        match rx.recv_timeout(Duration::from_secs(10)).unwrap() {
            Ok(()) => written.push(id),
            Err(e) => {
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("the disk never filled");
    assert!(failure.contains("disk is full"), "{failure}");
    std::fs::remove_file(&filler).unwrap();
    // The writer reopens the file; soon a write goes through again.
    let deadline = Instant::now() + Duration::from_secs(20);
    let next = 20_000;
    loop {
        let (tx, rx) = crossbeam_channel::bounded(1);
        store
            .try_append(
                vec!["alice".into()],
                msg(next, "bob", StoredKind::Direct),
                Box::new(move |r| tx.send(r).unwrap()),
            )
            .unwrap();
        if rx.recv_timeout(Duration::from_secs(10)).unwrap().is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "the store did not recover");
        std::thread::sleep(Duration::from_millis(200));
    }
    written.push(next);
    // Every message acknowledged as written is there, once, in order.
    assert_eq!(ids(&store.take_mailbox("alice").unwrap()), written);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_second_open_of_the_same_file_is_refused() {
    let dir = TempDir::new("twice");
    let _first = Store::open(&dir.0, LIMITS).unwrap();
    let e = open_err(&dir.0);
    assert!(e.contains("in use by another process"), "{e}");
}
