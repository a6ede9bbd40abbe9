//! The native door's adapter: decoded native frames (docs/protocol.md) into
//! core operations, and their results into native frames.

use crate::accounts;
use crate::core::conn::{Conn, Door};
use crate::core::hold;
use crate::core::outbound::Outbox;
use crate::core::rooms::RoomError;
use crate::core::route::{current_reply_ref, reply_frame, web_closing};
use crate::core::{
    close, deliver, error, join_room, member_names, part_room, receipt, strike, take_name, Flow,
    NameError, SendError, Session,
};
use crate::metrics::CloseReason;
use crate::Shared;
use protocol::web::ws;
use protocol::{validate_room, ErrorCode, Event, Request, Targets};
use std::sync::atomic::AtomicU8;
use std::sync::Arc;
use std::time::Instant;

/// Sends one event to one connection (as JSON if it came by the web door,
/// which applies its requests here too).
pub(crate) fn reply(out: &mut Outbox, conn: &Arc<Conn>, event: &Event<'_>) {
    out.push(conn, &reply_frame(conn, event));
}

/// Applies one decoded frame. `now` is the time the batch was read.
pub(crate) fn handle(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    req: Request<'_>,
    now: Instant,
) -> Flow {
    // QUIT always works: leaving is never a flood.
    if !matches!(req, Request::Quit { .. }) && !session.take_token(shared, now) {
        return rate_limited(shared, out, conn, session, req, now);
    }
    let named = conn.name().is_some();
    match req {
        Request::Name { name } => register(shared, out, conn, session, name),
        Request::Login { name, password } => login(shared, out, conn, session, name, password),
        Request::Ping { token } => reply(out, conn, &Event::Pong { token }),
        Request::Help => reply(out, conn, &Event::Info { text: &shared.help }),
        Request::Quit { reason } => {
            if let Some(text) = reason {
                conn.set_quit_text(text);
            }
            close(shared, out, conn, CloseReason::Quit, Some(&bye(conn)));
            return Flow::Closed;
        }
        _ if !named => error(
            shared,
            out,
            conn,
            ErrorCode::NotRegistered,
            None,
            "choose a name first: NAME <name>",
        ),
        Request::Register { password } => register_account(shared, out, conn, session, password),
        Request::List { room: None } => {
            let names = crate::core::everyone_names(shared);
            let joined = names.join(" ");
            let users = Event::Users {
                count: names.len(),
                room: None,
                names: &joined,
            };
            reply(out, conn, &users);
        }
        Request::List { room: Some(room) } => list_room(shared, out, conn, room),
        Request::Join { room } => join(shared, out, conn, room),
        Request::Part { room, reason } => part(shared, out, conn, room, reason),
        Request::Rooms => {
            let rooms: Vec<String> = crate::core::all_rooms(shared)
                .into_iter()
                .map(|(r, _)| r)
                .collect();
            let joined = rooms.join(" ");
            let rooms = Event::Rooms {
                count: rooms.len(),
                rooms: &joined,
            };
            reply(out, conn, &rooms);
        }
        Request::Send { targets, body } => {
            let cost = send(shared, out, conn, session, targets, body);
            session.spend(shared, cost, now);
        }
        Request::Recv { id, from } => {
            receipt(shared, out, conn, session, id, from);
        }
    }
    Flow::Continue
}

/// `BYE`; on the web, `bye` and a normal WebSocket close.
fn bye(conn: &Conn) -> crate::core::conn::Frame {
    match conn.door {
        Door::Web => web_closing(conn, &Event::Bye, ws::close::NORMAL, "bye"),
        Door::Native | Door::Irc => reply_frame(conn, &Event::Bye),
    }
}

fn rate_limited(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    req: Request<'_>,
    now: Instant,
) -> Flow {
    // A receipt for a message this reader really got is still honoured
    // over the limit: there is at most one per message delivered, so a
    // reader showing a flood of messages isn't punished for it. Forged or
    // repeated receipts are strikes like any other frame.
    if let Request::Recv { id, from } = req {
        if conn.name().is_some() && receipt(shared, out, conn, session, id, from) {
            return Flow::Continue;
        }
    }
    strike(shared, out, conn, session, now)
}

/// `NAME <name>` on the native door.
fn register(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    name: &str,
) {
    if conn.name().is_none() && shared.accounts.as_ref().is_some_and(|a| a.owned(name)) {
        return error(
            shared,
            out,
            conn,
            ErrorCode::NameOwned,
            None,
            "that name is an account: NAME <name> <password>",
        );
    }
    if let Some(node) = shared.cluster.get() {
        // Claimed cluster-wide first, by the cluster thread (Redis is never
        // waited on here); the connection is held until it has answered.
        if conn.name().is_none() && protocol::validate_name(name).is_ok() {
            let state = Arc::new(AtomicU8::new(hold::WAITING));
            let job = crate::cluster::node::Job::Claim {
                conn: Arc::clone(conn),
                name: name.to_string(),
                reference: current_reply_ref(conn.id),
                held: Arc::clone(&state),
            };
            if node.submit(job) {
                session.hold(state, None);
            } else {
                let text = "too many names being claimed at once; try again";
                error(shared, out, conn, ErrorCode::Unavailable, None, text);
            }
            return;
        }
    }
    let taken = take_name(shared, out, conn, name, |out| {
        reply(out, conn, &Event::NameOk { name });
    });
    match taken {
        Ok(()) => {}
        Err(NameError::Already) => error(
            shared,
            out,
            conn,
            ErrorCode::AlreadyNamed,
            None,
            "this connection already has a name",
        ),
        Err(NameError::Bad(why)) => error(shared, out, conn, ErrorCode::BadName, None, why),
        Err(NameError::Taken) => error(
            shared,
            out,
            conn,
            ErrorCode::NameTaken,
            None,
            "that name is in use",
        ),
    }
}

/// `NAME <name> <password>`: checked by the accounts thread, which answers;
/// the connection is held until it has.
fn login(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    name: &str,
    password: &str,
) {
    if conn.name().is_some() {
        let text = "this connection already has a name";
        return error(shared, out, conn, ErrorCode::AlreadyNamed, None, text);
    }
    if let Err(why) = protocol::validate_name(name) {
        return error(shared, out, conn, ErrorCode::BadName, None, why);
    }
    let job = accounts::Job::Login {
        conn: Arc::clone(conn),
        name: name.to_string(),
        password: password.to_string(),
    };
    submit(shared, out, conn, session, password, job);
}

/// `REGISTER <password>`: the current name becomes an account.
fn register_account(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    password: &str,
) {
    if conn
        .name()
        .is_some_and(|n| shared.accounts.as_ref().is_some_and(|a| a.owned(n)))
    {
        let text = "this name is an account already";
        return error(shared, out, conn, ErrorCode::AlreadyRegistered, None, text);
    }
    let job = accounts::Job::Register {
        conn: Arc::clone(conn),
        password: password.to_string(),
    };
    submit(shared, out, conn, session, password, job);
}

/// Checks the password rules and hands `job` to the accounts thread.
fn submit(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    password: &str,
    job: accounts::Job,
) {
    if let Err(why) = accounts::password_ok(password) {
        return error(shared, out, conn, ErrorCode::BadPassword, None, why);
    }
    let Some(accounts) = shared.accounts.as_ref() else {
        let text = "accounts are off on this broker (it has no data_dir)";
        return error(shared, out, conn, ErrorCode::Unavailable, None, text);
    };
    let state = Arc::new(AtomicU8::new(hold::WAITING));
    let reference = current_reply_ref(conn.id);
    if accounts.submit(job, reference, Arc::clone(&state)) {
        session.hold(state, None);
    } else {
        let text = "too many logins at once; try again";
        error(shared, out, conn, ErrorCode::Unavailable, None, text);
    }
}

/// `SEND` on the native door: `ACK`, or the error. Returns the bytes
/// queued, for the byte budget.
fn send(
    shared: &Shared,
    out: &mut Outbox,
    conn: &Arc<Conn>,
    session: &mut Session,
    targets: Targets<'_>,
    body: &[u8],
) -> u64 {
    match deliver(shared, out, conn, targets, body, false) {
        Ok(s) => {
            let missing = (!s.missing.is_empty()).then_some(s.missing.as_str());
            match &s.stored {
                None => accepted(out, conn, s.id, s.queued, missing),
                Some(stored) => {
                    // The ACK waits until the store has it on disk (the
                    // connection is held meanwhile, so ACKs stay in
                    // order); if the store fails, the ACK says those
                    // accounts were missed.
                    let ack = |queued, missing: Option<&str>| {
                        reply_frame(
                            conn,
                            &Event::Ack {
                                id: s.id,
                                queued,
                                missing,
                            },
                        )
                    };
                    let mut failed_missing = s.missing.clone();
                    for n in &stored.names {
                        if !failed_missing.is_empty() {
                            failed_missing.push(',');
                        }
                        failed_missing.push_str(n);
                    }
                    let unstored = s.queued.saturating_sub(stored.names.len() as u64);
                    let then = [
                        ack(s.queued, missing),
                        ack(unstored, Some(failed_missing.as_str())),
                    ];
                    session.hold(Arc::clone(&stored.state), Some(then));
                }
            }
            s.bytes
        }
        Err(SendError::NoSuchUser(names)) => {
            // `all` is reserved, so nobody has it: whoever typed it meant
            // everyone (issue 16). The code stays; the text says how.
            let meant_everyone = names.split(',').any(|n| n.eq_ignore_ascii_case("all"));
            let text = if meant_everyone {
                "no such user online; to send to everyone use SEND * :<text>"
            } else {
                "no such user online"
            };
            error(shared, out, conn, ErrorCode::NoSuchUser, Some(&names), text);
            0
        }
        Err(SendError::BadRoom(why)) => {
            error(shared, out, conn, ErrorCode::BadName, None, why);
            0
        }
        Err(SendError::NotInRoom) => {
            not_in_room(shared, out, conn, targets.as_str());
            0
        }
        Err(SendError::Unavailable(busy)) => {
            error(shared, out, conn, ErrorCode::Unavailable, None, busy.text());
            0
        }
    }
}

fn accepted(out: &mut Outbox, conn: &Arc<Conn>, id: u64, queued: u64, missing: Option<&str>) {
    reply(
        out,
        conn,
        &Event::Ack {
            id,
            queued,
            missing,
        },
    );
}

/// Checks a room name from the wire; on a bad one, replies `BAD_NAME`.
fn room_ok(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) -> bool {
    match validate_room(room) {
        Ok(()) => true,
        Err(why) => {
            error(shared, out, conn, ErrorCode::BadName, None, why);
            false
        }
    }
}

fn not_in_room(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    error(
        shared,
        out,
        conn,
        ErrorCode::NotInRoom,
        Some(room),
        "you are not in that room",
    );
}

/// `JOIN #room`: `OK JOIN #room <members>` to the joiner (before any of the
/// room's messages), `JOINED <name> #room` to the others.
fn join(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    let joined = join_room(shared, out, conn, room, |out, r, members| {
        reply(
            out,
            conn,
            &Event::JoinOk {
                room: &r.name,
                members,
            },
        );
        crate::core::replay_history(shared, out, conn, &r.name);
    });
    if let Err(e) = joined {
        room_error(shared, out, conn, room, e);
    }
}

fn room_error(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str, e: RoomError) {
    let text = match e {
        RoomError::AlreadyIn => "you are already in that room",
        RoomError::NotIn => "you are not in that room",
        RoomError::TooMany => "you are in as many rooms as allowed; PART one first",
        RoomError::Closing => return,
    };
    if let Some(code) = e.code() {
        let args = (code != ErrorCode::TooManyRooms).then_some(room);
        error(shared, out, conn, code, args, text);
    }
}

/// `PART #room`: `OK PART #room`, and `PARTED <name> #room` to the others.
fn part(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str, reason: Option<&[u8]>) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    // The reason reaches IRC members (PART #room :reason); PARTED has none.
    match part_room(shared, out, conn, room, reason) {
        Ok(r) => reply(out, conn, &Event::PartOk { room: &r.name }),
        Err(e) => room_error(shared, out, conn, room, e),
    }
}

/// `LIST #room`: `USERS <count> #room :<names>`, for members only.
fn list_room(shared: &Shared, out: &mut Outbox, conn: &Arc<Conn>, room: &str) {
    if !room_ok(shared, out, conn, room) {
        return;
    }
    let Some(r) = shared.rooms.member_of(room, conn) else {
        return not_in_room(shared, out, conn, room);
    };
    let names = member_names(shared, &r);
    reply(
        out,
        conn,
        &Event::Users {
            count: names.len(),
            room: Some(&r.name),
            names: &names.join(" "),
        },
    );
}
