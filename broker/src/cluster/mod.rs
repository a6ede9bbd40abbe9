//! The cluster: several brokers acting as one chat through Redis
//! (`shared/cluster.md`, docs/cluster.md). [`wire`] is the pure codec of
//! what nodes tell each other, [`link`] the Redis connections on threads
//! of their own, and [`node`] this broker as one node: the mirror of who
//! is where, the cluster thread (claims, releases, the periodic check,
//! rejoining) and the link's events routed to local users. [`accounts`]
//! keeps accounts and absent accounts' messages in Redis, for every node.
//!
//! # What Redis holds
//!
//! Everything is under `chat:<cluster>:` (`<cluster>` is a name, so
//! several clusters can share one Redis):
//!
//! | key / channel | type | what |
//! |---|---|---|
//! | `alive:<node>` | string, `PX` lease | the node's last heartbeat (Unix ms); it expires `node_timeout − heartbeat` after it was set |
//! | `nodes` | set | nodes that have beaten and were not cleaned up (how dead ones are found) |
//! | `name:<folded>` | string | the node that has this name (claimed with a Lua `SET`, atomic) |
//! | `names:<node>` | hash | a node's names, folded → as shown (how a dead node's names are found and freed) |
//! | `rooms:<node>` | hash | a node's users' rooms, folded → shown rooms, space-separated |
//! | `slots`, `slot_owners` | hashes | each node's number in message ids, and back |
//! | channel `node:<node>` | pub/sub | batches for that node's users |
//! | channel `all` | pub/sub | batches for every node (`all`, rooms, presence, accounts) |
//! | `account:<folded>`, `accounts` | hash, set | the accounts ([`accounts`]) |
//! | `mailbox:<folded>`, `live:<folded>` | list, string | absent accounts' stored messages, and where a logged-in account's new ones go ([`accounts`]) |
//!
//! Live messages pass through pub/sub and are not kept there; messages
//! for absent accounts wait in their mailboxes. Room history stays with
//! each node (its store).
//!
//! # Message flow
//!
//! A worker routes a message to its local recipients as today, and for
//! remote ones builds **one `Item::Msg` per node that has recipients**
//! (`to` = that node's recipients, folded) and calls `Link::try_publish`,
//! which never blocks: `Err` (Redis down, or the queue full) is answered
//! `ERR UNAVAILABLE` before anyone gets it. `all` is one item to
//! `Target::All`, a room message one item per node with members (`to`
//! empty: each node knows its own members).
//! The publisher thread takes everything queued in one round, batches it
//! per channel into as few `PUBLISH`es as the order allows (one pipeline
//! per round), and each node's subscriber thread gets its channel and the
//! all channel on one connection, in publish order: so a sender's items
//! reach every node in the order they were queued. The subscriber hands
//! each batch to `Events::batch`, which routes it to local users through
//! the core (its own `Outbox`, then `core::flush`), as the accounts thread
//! does.
//!
//! # How failures are found
//!
//! - Each node's heartbeat thread sets `alive:<node>` every `heartbeat`
//!   with a lease of `node_timeout − heartbeat`, then looks at every node
//!   in `nodes`: one without a live key is dead. Its names are freed by a
//!   Lua script that only the first caller gets anything from, so exactly
//!   one node learns the names (`Events::node_gone(node, freed)`); every
//!   other node that knew it gets `node_gone(node, [])`. A node that dies
//!   is noticed within `node_timeout`.
//! - A dead node's names stay taken until a heartbeat frees them, so each
//!   is announced as left before anyone can take it again (a node that
//!   died while no other ran is freed by the next node's first
//!   heartbeat). A node's first heartbeat also frees whatever its own
//!   earlier life left: node names must be unique.
//! - A claim needs the claimer's own heartbeat key, checked in the same
//!   script, so a node that was taken for dead can't claim a name while
//!   the others free its names.
//! - Each link thread reconnects with back-off on its own. When one finds
//!   its connection broken, all are taken for suspect: the link is `Down`
//!   (`Events::status`) until each thread has proved its connection again
//!   (a `PING` that works, or a new connection), then `Up`; so an idle
//!   connection to a Redis that restarted never fails the first item
//!   after it. The subscriber pings a quiet connection, so a Redis that
//!   hangs is found too. While down, `try_publish` and claims are `Err` at
//!   once; items queued when the connection broke are lost (counted in
//!   `LinkStats::lost`).

pub(crate) mod accounts;
pub(crate) mod link;
pub(crate) mod node;
pub(crate) mod wire;

#[cfg(test)]
mod tests;

/// `url` with any password in it hidden (for the log).
pub(crate) fn without_password(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}
