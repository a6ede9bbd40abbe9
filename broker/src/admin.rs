//! `broker account …`: the operator's view of the accounts, straight from
//! the database in `data_dir`. The database has one user at a time, so
//! these run while the broker is stopped (the error says so otherwise).
//!
//! With `cluster` set the accounts are the cluster's, in its Redis
//! (`cluster::accounts`): these then work on Redis, while the nodes run,
//! and every node hears of a deletion at once. The local database is not
//! touched.

use crate::cluster::accounts::{Book, Limits, ADMIN};
use crate::cluster::link::{LinkError, Settings};
use crate::config::Config;
use crate::store::{self, Account, Store};
use protocol::fold_name;
use std::path::Path;
use std::time::Duration;

/// Where the accounts are: the local database, or the cluster's Redis.
enum Accounts {
    Local(Store),
    Cluster(Box<Book>, String),
}

impl Accounts {
    fn open(config: &Config) -> Result<Accounts, String> {
        if config.cluster.is_empty() {
            return open(config).map(Accounts::Local);
        }
        let mut settings = Settings::new(&config.cluster, "main", "admin");
        settings.heartbeat = Duration::from_secs(config.cluster_heartbeat_secs);
        settings.node_timeout = Duration::from_secs(config.cluster_node_timeout_secs);
        let limits = Limits {
            mailbox_max: config.mailbox_max,
            mailbox_days: config.mailbox_days,
        };
        let url = crate::cluster::without_password(&config.cluster);
        Book::open(
            &config.cluster,
            "main",
            ADMIN,
            settings.io_timeout(),
            limits,
        )
        .map(|b| Accounts::Cluster(Box::new(b), url))
        .map_err(|e| e.to_string())
    }

    /// A cluster error as a sentence that names the Redis.
    fn redis(url: &str, e: LinkError) -> String {
        match e {
            LinkError::Down => format!("the cluster's Redis at {url} is not reachable"),
            other => format!("the cluster's Redis at {url}: {other}"),
        }
    }

    fn list(&self) -> Result<Vec<Account>, String> {
        match self {
            Accounts::Local(store) => store.accounts(),
            Accounts::Cluster(book, url) => book.accounts().map_err(|e| Self::redis(url, e)),
        }
    }

    fn delete(&self, folded: &str) -> Result<bool, String> {
        match self {
            Accounts::Local(store) => store.delete_account(folded),
            Accounts::Cluster(book, url) => book.delete(folded).map_err(|e| Self::redis(url, e)),
        }
    }

    fn set_password(&self, folded: &str, hash: &str) -> Result<bool, String> {
        match self {
            Accounts::Local(store) => store.set_password(folded, hash),
            Accounts::Cluster(book, url) => book
                .set_password(folded, hash)
                .map_err(|e| Self::redis(url, e)),
        }
    }

    fn close(&self) {
        if let Accounts::Local(store) = self {
            store.close();
        }
    }
}

fn open(config: &Config) -> Result<Store, String> {
    if config.data_dir.is_empty() {
        return Err("data_dir is empty in this config: there are no accounts".into());
    }
    let limits = store::Limits {
        mailbox_max: config.mailbox_max,
        mailbox_days: config.mailbox_days,
        room_history: config.room_history,
        queue_len: 16,
    };
    Store::open(Path::new(&config.data_dir), limits)
}

/// Every account, one per line: name, when it was made (UTC), sorted by
/// name.
pub fn list(config: &Config) -> Result<String, String> {
    let store = Accounts::open(config)?;
    let mut accounts = store.list()?;
    accounts.sort_by_key(|a| fold_name(&a.name));
    let mut out = String::new();
    for a in &accounts {
        out.push_str(&format!("{}\tregistered {}\n", a.name, utc(a.created_ms)));
    }
    out.push_str(&format!("{} accounts\n", accounts.len()));
    store.close();
    Ok(out)
}

/// Deletes an account and its stored messages.
pub fn delete(config: &Config, name: &str) -> Result<String, String> {
    let store = Accounts::open(config)?;
    let done = store.delete(&fold_name(name))?;
    store.close();
    if done {
        Ok(format!("deleted {name} and its stored messages\n"))
    } else {
        Err(format!("there is no account {name}"))
    }
}

/// Sets a new password (checked against the password rules).
pub fn reset_password(config: &Config, name: &str, password: &str) -> Result<String, String> {
    crate::accounts::password_ok(password).map_err(str::to_string)?;
    let store = Accounts::open(config)?;
    let hash = store::hash_password(password)?;
    let done = store.set_password(&fold_name(name), &hash)?;
    store.close();
    if done {
        Ok(format!("new password set for {name}\n"))
    } else {
        Err(format!("there is no account {name}"))
    }
}

/// Unix milliseconds as `YYYY-MM-DD HH:MM UTC`.
fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rest) = (secs / 86_400, secs % 86_400);
    // Days since 1970-01-01 to a civil date (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rest / 3600,
        (rest % 3600) / 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates() {
        assert_eq!(utc(0), "1970-01-01 00:00 UTC");
        assert_eq!(utc(1_796_408_037_155), "2026-12-04 18:13 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00 UTC");
    }
}
