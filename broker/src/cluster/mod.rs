//! The cluster: several brokers acting as one chat through Redis
//! (`shared/cluster.md`). This module is the transport: [`wire`], the
//! pure codec of what nodes tell each other, and [`link`], the Redis
//! connections on threads of their own. Routing does not use it yet; what
//! follows is the plan for wiring it in.
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
//! | `ids` | integer | the highest message id handed out in blocks (`reserve_ids`) |
//! | channel `node:<node>` | pub/sub | batches for that node's users |
//! | channel `all` | pub/sub | batches for every node (`all`, rooms, presence) |
//!
//! Nothing else is in Redis: messages pass through pub/sub and are not
//! kept there; accounts, mailboxes and room history stay in each node's
//! store (making them cluster-wide is a later step of issue 15).
//!
//! # Message flow
//!
//! A worker routes a message to its local recipients as today, and for
//! remote ones builds **one `Item::Msg` per node that has recipients**
//! (`to` = that node's recipients, folded) and calls `Link::try_publish`,
//! which never blocks: `Err` (Redis down, or the queue full) is answered
//! `ERR UNAVAILABLE` for the remote part. `all` and room messages are one
//! item to `Target::All` (`to` empty: each node knows its own members).
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
//!
//! # What the lead wires next
//!
//! 1. Config and start: `cluster`, `node`, `cluster_heartbeat_secs`,
//!    `cluster_node_timeout_secs` (and a cluster name, default e.g.
//!    `main`); `Link::start` in `broker::start` with an `Events` that holds
//!    `Arc<Shared>`; `Link::shutdown` in `Broker::finish` after the users'
//!    `Left quit` items are published. Remove `#![allow(dead_code)]`.
//! 2. Names: `NAME` holds the connection (as accounts do) and hands the
//!    claim to a cluster thread: `claim(folded, shown)` then
//!    `core::take_name`; `false` → `NAME_TAKEN`, `Err` → `UNAVAILABLE`.
//!    Release on close. Then publish `Joined` to all.
//! 3. Presence: a mirror of remote users (folded → shown, node) and of
//!    their rooms, kept from `Joined`/`Left`/`Parted`; `LIST`, `LIST
//!    #room`, `ROOMS`, `deliver` (who is where, `missing`) read local +
//!    mirror. `ACK`'s queued count adds the remote recipients.
//! 4. Ids: message ids from blocks of `reserve_ids(floor = next local id,
//!    n)`, so they are unique cluster-wide and increase per sender.
//! 5. `RCPT`: a reader's `RECV` for a message from another node sends
//!    `Item::Rcpt` to `Target::Node(from_node)`; the sender's node checks
//!    and queues `RCPT` (so the receipt ring must remember a remote
//!    sender's node and name, not a connection id).
//! 6. Faults (`cluster.md`): on `node_gone(node, freed)` the node that got
//!    `freed` publishes `Left { reason: timeout }` for each (and shows it
//!    locally); every node drops what its mirror still has of that node,
//!    announcing `LEFT … timeout` only for users no `Left` came for (so
//!    each is announced once). On `Down`: log, keep serving locally,
//!    answer cross-node work `ERR UNAVAILABLE`. On `Up` after `Down`:
//!    re-claim every local name (`false` → that user gets
//!    `ERR NAME_TAKEN` and is closed as `error`), publish `Joined` for
//!    local users again, and rebuild the mirror (`nodes()`, `names_of`;
//!    room membership needs either a `rooms:<node>` hash or a sync item in
//!    a wire version 2), since whatever was published meanwhile is lost.
//! 7. Loadgen `--addr a,b,c`, the three-node integration tests on
//!    `testkit::redis::RedisServer`, `docs/cluster.md`, `.ci/run`.

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
