// The chat page's behaviour: one WebSocket to /ws speaking the JSON frames
// of docs/doors.md "Web door", whose meaning is the native protocol's
// (docs/protocol.md). Plain DOM, no framework, no build step.
//
// Rule for everything below: text from the wire (names, rooms, message
// bodies, error texts) reaches the page only through textContent, never as
// markup, so another user's text can't become HTML.

const $ = (id) => document.getElementById(id);

/** Reconnect back-off: 1 s, doubling, at most 30 s, each with ±20 % jitter. */
const BACKOFF_MIN_MS = 1000;
const BACKOFF_MAX_MS = 30000;
/** How often we ping, and how long a silent connection is trusted. */
const PING_EVERY_MS = 20000;
const SILENT_MS = 60000;
/** How often the room list is fetched while nothing else refreshed it. */
const ROOMS_EVERY_MS = 15000;
/** Log entries kept; older ones are dropped so a long session stays light. */
const LOG_MAX = 1000;
/** A message stored while we were away is marked "delivered late" when it
 *  is older than our login by more than this: a message from a second ago
 *  is not news. */
const LATE_MS = 3000;

const state = {
  ws: null,
  /** True between `hello` and the close: requests may be sent. */
  open: false,
  /** The name (and password) to take as soon as the broker greets us. */
  wanted: null,
  /** Our name once the broker said `ok name`. */
  me: null,
  /** Its password, if one was given or registered: kept in memory only
   *  (never in storage), to take the owned name again after a reconnect. */
  password: undefined,
  /** Whether our name is an account (we logged in or registered with a
   *  password): then there is nothing to register. */
  account: false,
  /** Messages the broker replays right after a reply: stored ones after
   *  `ok name` ({kind: 'late'}), a room's history after `ok join`
   *  ({kind: 'history', room}); `at` is when that reply came. Any other
   *  frame ends it. */
  replay: null,
  /** Every message line in the log, `id:from` → its `ts` (null for our
   *  own, timed by the page), so a replay (a room's history again after a
   *  reconnect) doesn't show a message twice. The `ts` tells a message
   *  apart from a newer one with a reused id (a broker without a database
   *  counts ids from 1 again after a restart). */
  shown: new Map(),
  /** A `name` request is out: don't send another (ALREADY_NAMED). */
  naming: false,
  /** Everyone online, as the broker lists them (sorted, includes us). */
  online: [],
  /** Every room that exists, from the last `rooms`. */
  rooms: [],
  /** Rooms we are in, by lower-case name → name as shown. Kept across a
   *  reconnect so we can join them again. */
  mine: new Map(),
  /** Where the composer sends: all | person | people | room. */
  target: { kind: 'all' },
  /** Names ticked for a message to several people. */
  ticked: new Set(),
  /** Requests waiting for their reply, by `ref`. */
  pending: new Map(),
  nextRef: 1,
  /** Our own messages by id: their receipt line and who has read them. */
  own: new Map(),
  /** Receipts that arrived before their `ack` (a race the wire allows). */
  early: new Map(),
  /** Lines we sent, for Up/Down recall. */
  history: [],
  historyPos: 0,
  /** Tab completion in progress: what was typed and where we are. */
  tab: null,
  /** Reconnect attempts since the last successful name. */
  attempt: 0,
  /** The broker's shutdown text, once it said it is stopping. */
  shutdown: null,
  lastHeard: 0,
  countdown: null,
  /** Whether the log follows new lines: true until the reader scrolls up.
   *  Kept as a flag (not measured at each line) because the log also
   *  shrinks under it, e.g. when the banner appears. */
  stick: true,
};

// ---- Small DOM helpers ----

/** Makes an element; string children become text nodes, never markup. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') node.className = v;
    else if (k.startsWith('data-') || k.startsWith('aria-')) node.setAttribute(k, v);
    else node[k] = v;
  }
  for (const c of children) {
    if (c !== null && c !== undefined) node.append(c);
  }
  return node;
}

const lower = (s) => s.toLowerCase();
const isRoom = (s) => typeof s === 'string' && s.startsWith('#');

/** The time of a line; with the date too when it is not today (a stored
 *  message may be days old). */
function clock(ms) {
  const d = new Date(ms);
  const time = d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
  const today = d.toDateString() === new Date().toDateString();
  return el('time', {
    class: 'ts',
    dateTime: d.toISOString(),
    title: d.toLocaleString(),
  }, today ? time : `${d.toLocaleDateString([], { day: 'numeric', month: 'short' })} ${time}`);
}

/** What identifies a message line for `state.shown`. */
const shownKey = (id, from) => `${id}:${lower(from)}`;

// ---- The log ----

/** Appends to the log; the view follows the newest line unless the
 *  reader has scrolled up (see `stick`). */
function append(li) {
  const log = $('log');
  log.append(li);
  while (log.childElementCount > LOG_MAX) {
    const old = log.firstElementChild;
    state.own.delete(Number(old.dataset.id));
    if (old.dataset.from) state.shown.delete(shownKey(old.dataset.id, old.dataset.from));
    old.remove();
  }
  if (state.stick) log.scrollTop = log.scrollHeight;
}

/** A line that is not a message: presence, rooms, errors, our own notes. */
function notice(text, kind = 'info') {
  append(el('li', { class: `notice ${kind}`, 'data-testid': 'notice' },
    clock(Date.now()), el('span', { class: 'text' }, text)));
}

/** The kind tag class: direct, multi, all, or room for any `#room`. */
const kindClass = (kind) => (isRoom(kind) ? 'room' : kind);

/** The marker of a message that was not live, by `replay` kind. */
const MARKERS = {
  late: { text: 'delivered late', title: 'Sent while you were away; kept for you and delivered when you logged in. The time is when it was sent.' },
  history: { text: 'history', title: 'Sent before you joined: the room’s recent messages. The time is when it was sent.' },
};

/** One message line: time, kind tag, (a late/history marker), sender,
 *  (our target), text. */
function messageLine({ id, from, kind, ts, text, to, own, marker }) {
  const mark = marker ? MARKERS[marker] : null;
  state.shown.set(shownKey(id, from), own ? null : ts);
  return el('li', {
    class: `msg kind-${kindClass(kind)}${own ? ' own' : ''}${marker ? ` ${marker}` : ''}`,
    'data-id': String(id),
    'data-kind': kind,
    'data-from': from,
    'data-ts': String(ts),
    'data-testid': 'msg',
  },
  clock(ts),
  el('span', { class: 'tag', 'data-testid': 'kind' }, kind),
  mark ? el('span', { class: 'marker', title: mark.title, 'data-testid': 'marker' }, mark.text) : null,
  el('span', { class: 'from' }, from),
  to ? el('span', { class: 'to' }, `→ ${to}`) : null,
  el('span', { class: 'text', 'data-testid': 'text' }, text));
}

// ---- Talking to the broker ----

/** Sends a request; `ctx` (if any) is remembered until its reply. */
function request(frame, ctx) {
  if (!state.open) {
    notice('Not connected: nothing was sent.', 'error');
    return false;
  }
  if (ctx) {
    frame.ref = state.nextRef++;
    state.pending.set(frame.ref, ctx);
  }
  state.ws.send(JSON.stringify(frame));
  return true;
}

function connect() {
  clearInterval(state.countdown);
  status('connecting…');
  const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const ws = new WebSocket(`${scheme}//${location.host}/ws`);
  state.ws = ws;
  ws.onmessage = (e) => {
    state.lastHeard = Date.now();
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch {
      notice('The broker sent something that is not JSON; ignored.', 'error');
      return;
    }
    handle(frame);
  };
  ws.onclose = () => {
    if (state.ws === ws) lost();
  };
}

/** Gives up on a connection that went silent: a close handshake over a
 *  dead link could take minutes, so we don't wait for it. */
function drop() {
  const ws = state.ws;
  ws.onclose = null;
  ws.close();
  lost();
}

/** The connection ended: say so, then try again after a back-off. */
function lost() {
  state.open = false;
  state.ws = null;
  state.naming = false;
  state.replay = null;
  checking(false);
  // Sends without an ack may or may not have gone out: say which.
  for (const ctx of state.pending.values()) {
    if (ctx.op === 'send') notice(`Maybe not sent to ${ctx.label} (connection lost): ${ctx.text}`, 'error');
    if (ctx.op === 'register') {
      registerNote('Connection lost before the answer: the name may or may not be registered. Try again once back.', 'error');
    }
  }
  state.pending.clear();
  status('offline');
  const base = Math.min(BACKOFF_MAX_MS, BACKOFF_MIN_MS * 2 ** state.attempt);
  const delay = Math.min(BACKOFF_MAX_MS, Math.round(base * (0.8 + Math.random() * 0.4)));
  state.attempt += 1;
  const why = state.shutdown !== null ? shutdownText() : 'Connection lost.';
  // One line in the log per outage, not one per failed attempt.
  if (state.me && state.attempt === 1) notice(why, 'error');
  const until = Date.now() + delay;
  const tick = () => {
    const s = Math.max(1, Math.ceil((until - Date.now()) / 1000));
    banner(`${why} Reconnecting in ${s} s…`);
  };
  tick();
  state.countdown = setInterval(tick, 1000);
  setTimeout(connect, delay);
}

function handle(f) {
  // A replay is the run of messages right after its reply; anything else
  // ends it (see `message`).
  if (f.type !== 'msg') state.replay = null;
  switch (f.type) {
    case 'hello': return greeted(f);
    case 'ok': return ok(f);
    case 'users': return users(f);
    case 'rooms': return roomsList(f.rooms);
    case 'msg': return message(f);
    case 'ack': return acked(f);
    case 'rcpt': return receipt(f.id, f.by);
    case 'joined': return joined(f);
    case 'parted': return parted(f);
    case 'left': return left(f);
    case 'info': return notice(f.text);
    case 'error': return failed(f);
    case 'shutdown':
      state.shutdown = f.text ?? '';
      return banner(shutdownText());
    case 'pong':
    case 'bye':
      return undefined;
    default:
      return undefined;
  }
}

/** The banner line for the broker's `shutdown`, its text as a sentence. */
function shutdownText() {
  const text = state.shutdown.trim();
  if (!text) return 'Server shutdown.';
  return `Server shutdown: ${text}${/[.!?]$/.test(text) ? '' : '.'}`;
}

function greeted(f) {
  state.open = true;
  state.shutdown = null;
  if (f.server) {
    $('server').textContent = f.server;
    document.title = `${f.server} · chat`;
  }
  status('connected');
  // After a reconnect we take the same name again by ourselves.
  if (!state.wanted && state.me) state.wanted = { name: state.me, password: state.password };
  if (state.wanted) {
    takeName();
  } else {
    state.attempt = 0;
    banner(null);
  }
}

function takeName() {
  if (state.naming) return;
  state.naming = true;
  const { name, password } = state.wanted;
  const frame = { op: 'name', name };
  if (password) frame.password = password;
  // A password is checked slowly on purpose (and ever more slowly after
  // wrong ones): say we are waiting rather than look stuck.
  if (password) checking(true);
  request(frame, { op: 'name', name, password });
}

/** Shows (or hides) that a password is being checked: under the prompt,
 *  and in the status while a reconnect logs in by itself. */
function checking(on) {
  $('login-wait').hidden = !on;
  $('join-btn').disabled = on;
  if (on) status('checking password…');
}

function ok(f) {
  const ctx = state.pending.get(f.ref);
  state.pending.delete(f.ref);
  if (f.op === 'name') {
    state.naming = false;
    checking(false);
    named(f.name);
    // The messages stored for us come next, before any other reply.
    state.replay = { kind: 'late', at: Date.now() };
    return undefined;
  }
  if (f.op === 'register') return registered(f.name, ctx);
  if (f.op === 'join') {
    // The room's history comes next, before any other reply.
    state.replay = { kind: 'history', room: f.room, at: Date.now() };
    state.mine.set(lower(f.room), f.room);
    if (ctx?.rejoin) {
      notice(`Back in ${f.room}.`, 'room');
    } else {
      notice(`You joined ${f.room}${f.members ? ` (${f.members} in it)` : ''}.`, 'room');
      setTarget({ kind: 'room', room: f.room });
    }
    return request({ op: 'rooms' });
  }
  if (f.op === 'part') {
    state.mine.delete(lower(f.room));
    notice(`You left ${f.room}.`, 'room');
    if (state.target.kind === 'room' && lower(state.target.room) === lower(f.room)) {
      setTarget({ kind: 'all' });
    }
    return request({ op: 'rooms' });
  }
  return undefined;
}

/** We have our name: show the chat, ask for the lists, rejoin rooms. */
function named(name) {
  const again = state.me !== null;
  state.me = name;
  state.password = state.wanted?.password;
  // Only an account's name is taken with a password.
  state.account = Boolean(state.password);
  state.wanted = null;
  $('password').value = '';
  state.attempt = 0;
  banner(null);
  $('login-error').textContent = '';
  $('login-view').hidden = true;
  $('chat-view').hidden = false;
  $('me').textContent = name;
  renderAccount();
  status('online');
  notice(again ? `Reconnected as ${name}.` : `You are ${name}.`);
  request({ op: 'list' });
  request({ op: 'rooms' });
  for (const room of state.mine.values()) request({ op: 'join', room }, { op: 'join', room, rejoin: true });
  renderTarget();
  if (!again) $('composer').focus();
}

function users(f) {
  if (f.room) {
    notice(`In ${f.room}: ${f.names.join(', ')}`, 'room');
    return;
  }
  state.online = [...f.names];
  renderUsers();
}

function roomsList(rooms) {
  state.rooms = [...rooms];
  renderRooms();
}

function message(m) {
  const marker = replayed(m);
  // A room's history again after a reconnect: what we show already stays
  // as it is (its receipt was sent then).
  const key = shownKey(m.id, m.from);
  if (marker && state.shown.has(key) && [null, m.ts].includes(state.shown.get(key))) return;
  append(messageLine({ ...m, marker }));
  // A receipt for every message shown: the sender sees "read by".
  request({ op: 'recv', id: m.id, from: m.from });
}

/** 'late' or 'history' if `m` is part of a replay and older than the
 *  reply it follows (by LATE_MS for stored messages); otherwise null.
 *  Both times are by the page's clock against the broker's `ts`, and a
 *  message that is not part of a replay is never marked, so a clock that
 *  is off marks nothing live. */
function replayed(m) {
  const r = state.replay;
  if (!r) return null;
  if (r.kind === 'late' && (m.kind === 'direct' || m.kind === 'multi')) {
    return m.ts < r.at - LATE_MS ? 'late' : null;
  }
  if (r.kind === 'history' && lower(m.kind) === lower(r.room)) {
    return m.ts <= r.at ? 'history' : null;
  }
  state.replay = null;
  return null;
}

/** Our message went out: show it, with where it went. */
function acked(f) {
  const ctx = state.pending.get(f.ref);
  state.pending.delete(f.ref);
  if (!ctx) return;
  const line = messageLine({
    id: f.id, from: state.me, kind: ctx.kind, ts: Date.now(), text: ctx.text, to: ctx.label, own: true,
  });
  const rcpt = el('span', { class: 'receipt', 'data-testid': 'receipt' });
  line.append(rcpt);
  const missing = f.missing ?? [];
  const sent = `sent to ${f.queued}` + (missing.length ? ` · not online: ${missing.join(', ')}` : '');
  const own = { rcpt, sent, readers: state.early.get(f.id) ?? [] };
  state.early.delete(f.id);
  state.own.set(f.id, own);
  // Filled before it is shown, so the log scrolls to its full height.
  showReceipt(own);
  append(line);
}

function receipt(id, by) {
  const own = state.own.get(id);
  if (!own) {
    state.early.set(id, [...(state.early.get(id) ?? []), by]);
    return;
  }
  if (!own.readers.includes(by)) own.readers.push(by);
  showReceipt(own);
}

function showReceipt(own) {
  own.rcpt.textContent = own.readers.length
    ? `${own.sent} · read by ${own.readers.join(', ')}`
    : own.sent;
  // A longer receipt may wrap onto a new line at the bottom of the log.
  if (state.stick) $('log').scrollTop = $('log').scrollHeight;
}

function joined(f) {
  if (f.room) {
    notice(`${f.name} joined ${f.room}.`, 'room');
    return;
  }
  if (!state.online.some((n) => lower(n) === lower(f.name))) {
    state.online.push(f.name);
    state.online.sort((a, b) => (lower(a) < lower(b) ? -1 : 1));
  }
  renderUsers();
  notice(`${f.name} is online.`, 'presence');
}

function parted(f) {
  notice(`${f.name} left ${f.room}.`, 'room');
}

function left(f) {
  state.online = state.online.filter((n) => lower(n) !== lower(f.name));
  if (state.ticked.delete(f.name)) toggleTick(f.name, false);
  renderUsers();
  notice(`${f.name} went offline (${f.reason}).`, 'presence');
}

/** What the broker's codes mean to a person, where the text isn't enough. */
const HINTS = {
  NAME_TAKEN: 'Someone online has that name already. Pick another.',
  BAD_NAME: 'Names are 1 to 32 of A–Z a–z 0–9 _ - . and can’t start with - or .',
  NAME_OWNED: 'This name is an account — enter its password.',
  ALREADY_REGISTERED: 'This name is an account already.',
  UNAVAILABLE: 'This broker keeps no accounts now (it may have been started without a data directory).',
  NO_SUCH_USER: 'Nobody you addressed is online.',
  NOT_IN_ROOM: 'You are not in that room.',
  RATE_LIMITED: 'Slow down: too many messages at once.',
};

/** Whether `pw` breaks the broker's password rules (8 to 128 bytes of
 *  UTF-8, no spaces): then BAD_PASSWORD is about the rules, not a guess. */
function badPassword(pw) {
  const bytes = new TextEncoder().encode(pw ?? '').length;
  return bytes < 8 || bytes > 128 || pw.includes(' ');
}
const PASSWORD_RULES = 'A password is 8 to 128 characters, without spaces (é and other letters beyond A–Z count as two or more).';

/** The reason under the name prompt for a refused `name`. */
function nameRefusal(f, ctx) {
  if (f.code !== 'BAD_PASSWORD') return `${f.code}: ${HINTS[f.code] ?? f.text}`;
  if (badPassword(ctx.password)) return `BAD_PASSWORD: ${PASSWORD_RULES}`;
  return `BAD_PASSWORD: wrong password for ${ctx.name} (or ${ctx.name} is not an account: then leave the password empty). Wrong tries make the next answer slower.`;
}

function failed(f) {
  const ctx = state.pending.get(f.ref);
  state.pending.delete(f.ref);
  const text = `${f.code}: ${HINTS[f.code] ?? f.text}`;
  if (ctx?.op === 'name') {
    state.naming = false;
    checking(false);
    // Back at the prompt (also when a reconnect finds the name taken).
    state.me = null;
    state.password = undefined;
    state.account = false;
    state.mine.clear();
    renderAccount();
    $('chat-view').hidden = true;
    $('login-view').hidden = false;
    $('name').value = ctx.name;
    const err = $('login-error');
    err.textContent = nameRefusal(f, ctx);
    // NAME_OWNED is not a mistake: it asks for the password.
    err.dataset.tone = f.code === 'NAME_OWNED' ? 'hint' : 'error';
    banner(null);
    status('connected');
    if (f.code === 'NAME_OWNED' || f.code === 'BAD_PASSWORD') {
      $('password').select();
      $('password').focus();
    } else {
      $('name').focus();
    }
    return;
  }
  if (ctx?.op === 'register') {
    const hint = f.code === 'BAD_PASSWORD' ? PASSWORD_RULES : HINTS[f.code] ?? f.text;
    registerNote(`${f.code}: ${hint}`, 'error');
    $('reg-submit').disabled = false;
    $('reg-password').select();
    $('reg-password').focus();
    return;
  }
  if (ctx?.op === 'join' && f.code !== 'ALREADY_IN_ROOM') {
    // A room we could not get back into after a reconnect is no longer ours.
    state.mine.delete(lower(ctx.room));
    renderRooms();
  }
  if (ctx?.op === 'send') {
    notice(`Not sent to ${ctx.label}: ${text}`, 'error');
    return;
  }
  notice(`Error ${text}`, 'error');
}

// ---- Registering the name: the form under the header ----

/** Shows whether our name is an account, or the control to make it one. */
function renderAccount() {
  const named = state.me !== null;
  $('account').hidden = !(named && state.account);
  $('register-open').hidden = !named || state.account;
  if (!named || state.account) closeRegister();
}

function openRegister() {
  $('register-name').textContent = state.me;
  $('register').hidden = false;
  $('register-open').setAttribute('aria-expanded', 'true');
  $('reg-submit').disabled = false;
  registerNote('');
  $('reg-password').focus();
}

function closeRegister() {
  $('register').hidden = true;
  $('register-open').setAttribute('aria-expanded', 'false');
  $('reg-password').value = '';
  $('reg-again').value = '';
}

function registerNote(text, tone = '') {
  const note = $('register-note');
  note.textContent = text;
  note.dataset.tone = tone;
}

function submitRegister(e) {
  e.preventDefault();
  const password = $('reg-password').value;
  if (!password) {
    registerNote('Type the password twice.', 'error');
    $('reg-password').focus();
    return;
  }
  if (password !== $('reg-again').value) {
    registerNote('The two passwords differ: type the same one twice.', 'error');
    $('reg-again').select();
    $('reg-again').focus();
    return;
  }
  // The broker judges the rules (and says which one failed); hashing
  // takes a moment on purpose.
  if (request({ op: 'register', password }, { op: 'register', password })) {
    registerNote('checking…', 'wait');
    $('reg-submit').disabled = true;
  }
}

/** `ok register`: the name is ours; a reconnect logs in with the password
 *  (kept in memory only, like the one typed at the prompt). */
function registered(name, ctx) {
  state.password = ctx?.password;
  state.account = true;
  renderAccount();
  notice(`${name} is now yours: log in with this password next time.`, 'ok');
}

// ---- Targets, lists and the banner ----

function setTarget(t) {
  state.target = t;
  if (t.kind !== 'people') state.ticked.clear();
  renderTarget();
  renderUsers();
  renderRooms();
}

/** The target as the wire wants it, with a label and the kind it makes. */
function wireTarget() {
  const t = state.target;
  switch (t.kind) {
    case 'person': return { to: t.name, label: t.name, kind: 'direct' };
    case 'people': return { to: [...t.names], label: t.names.join(', '), kind: t.names.length > 1 ? 'multi' : 'direct' };
    case 'room': return { to: t.room, label: t.room, kind: t.room };
    default: return { to: '*', label: 'everyone', kind: 'all' };
  }
}

function renderTarget() {
  const { label, kind } = wireTarget();
  const target = $('target');
  target.textContent = `To ${label}`;
  target.dataset.kind = kindClass(kind);
  target.title = `Messages go to ${label} (${kind})`;
}

function renderUsers() {
  const list = $('users');
  const t = state.target;
  list.replaceChildren(...state.online.map((name) => {
    const self = state.me && lower(name) === lower(state.me);
    const tick = el('input', { type: 'checkbox', checked: state.ticked.has(name), 'aria-label': `Tick ${name}` });
    tick.addEventListener('change', () => toggleTick(name, tick.checked));
    const pick = el('button', { type: 'button', class: 'pick', title: `Talk to ${name}` },
      name, self ? el('span', { class: 'muted' }, ' (you)') : null);
    pick.addEventListener('click', () => setTarget({ kind: 'person', name }));
    const chosen = t.kind === 'person' && lower(t.name) === lower(name);
    return el('li', { class: chosen ? 'chosen' : '', 'data-name': name }, tick, pick);
  }));
  $('user-count').textContent = `(${state.online.length})`;
  $('to-all').classList.toggle('chosen', t.kind === 'all');
}

function toggleTick(name, on) {
  if (on) state.ticked.add(name);
  else state.ticked.delete(name);
  setTarget(state.ticked.size
    ? { kind: 'people', names: state.online.filter((n) => state.ticked.has(n)) }
    : { kind: 'all' });
}

function renderRooms() {
  const names = new Map(state.rooms.map((r) => [lower(r), r]));
  for (const [k, r] of state.mine) names.set(k, r);
  const sorted = [...names.values()].sort((a, b) => (lower(a) < lower(b) ? -1 : 1));
  const t = state.target;
  $('rooms').replaceChildren(...sorted.map((room) => {
    const inside = state.mine.has(lower(room));
    const pick = el('button', { type: 'button', class: 'pick', title: inside ? `Talk in ${room}` : `Join ${room}` }, room);
    pick.addEventListener('click', () => (inside ? setTarget({ kind: 'room', room }) : join(room)));
    const act = el('button', { type: 'button', class: 'small', 'data-testid': inside ? 'part' : 'join' }, inside ? 'Leave' : 'Join');
    act.addEventListener('click', () => (inside ? part(room) : join(room)));
    const chosen = t.kind === 'room' && lower(t.room) === lower(room);
    return el('li', { class: `${inside ? 'in' : ''}${chosen ? ' chosen' : ''}`, 'data-room': room }, pick, act);
  }));
}

function join(room) {
  const name = room.startsWith('#') ? room : `#${room}`;
  if (state.mine.has(lower(name))) return setTarget({ kind: 'room', room: state.mine.get(lower(name)) });
  return request({ op: 'join', room: name }, { op: 'join', room: name });
}

function part(room) {
  request({ op: 'part', room }, { op: 'part' });
}

/** Shows `text` in the banner, or hides it for null. */
function banner(text) {
  clearInterval(state.countdown);
  const b = $('banner');
  b.hidden = text === null;
  b.textContent = text ?? '';
}

function status(text) {
  $('status').textContent = text;
  // Also on <body>: while offline the lists are dimmed, as they may be stale.
  document.body.dataset.state = text.replace(/\W/g, '');
  $('status').dataset.state = document.body.dataset.state;
}

// ---- The composer: Enter sends, Up/Down recall, Tab completes ----

/** `/join #r`, `/part [#r]`, `/to name,name|#room|*`: the keyboard way to
 *  do what the side panel does. Returns false if `line` isn't a command. */
function command(line) {
  const [cmd, arg = ''] = line.split(/\s+(.*)/);
  switch (cmd) {
    case '/join': if (arg) join(arg.trim()); return true;
    case '/part': {
      const room = arg.trim() || (state.target.kind === 'room' ? state.target.room : '');
      if (room) part(room);
      return true;
    }
    case '/to': {
      const to = arg.trim();
      if (to === '*' || to === '') setTarget({ kind: 'all' });
      else if (isRoom(to)) join(to);
      else if (to.includes(',')) setTarget({ kind: 'people', names: to.split(',').filter(Boolean) });
      else setTarget({ kind: 'person', name: to });
      return true;
    }
    case '/help':
      notice('Commands: /join #room · /part [#room] · /to name | a,b | #room | * · Tab completes names and rooms · ↑ recalls.');
      return true;
    default:
      return false;
  }
}

function submit(e) {
  e.preventDefault();
  const input = $('composer');
  const line = input.value;
  if (!line.trim()) return;
  state.history.push(line);
  state.historyPos = state.history.length;
  input.value = '';
  if (line.startsWith('/') && command(line)) return;
  const { to, label, kind } = wireTarget();
  request({ op: 'send', to, text: line }, { op: 'send', label, kind, text: line });
}

function recall(step) {
  const h = state.history;
  if (!h.length) return;
  state.historyPos = Math.max(0, Math.min(h.length, state.historyPos + step));
  const input = $('composer');
  input.value = h[state.historyPos] ?? '';
  input.setSelectionRange(input.value.length, input.value.length);
}

/** Completes the word before the cursor from the online names (or the
 *  rooms, for `#…`); Tab again cycles. Returns false if nothing matched. */
function complete(input) {
  let tab = state.tab;
  if (!tab || input.value !== tab.value || input.selectionStart !== tab.end) {
    const before = input.value.slice(0, input.selectionStart);
    const word = /[^\s,]*$/.exec(before)[0];
    if (!word) return false;
    const pool = isRoom(word) ? [...new Set([...state.rooms, ...state.mine.values()])] : state.online;
    const found = pool.filter((n) => lower(n).startsWith(lower(word)));
    if (!found.length) return false;
    tab = { start: before.length - word.length, rest: input.value.slice(input.selectionStart), found, i: -1 };
  }
  tab.i = (tab.i + 1) % tab.found.length;
  const head = input.value.slice(0, tab.start) + tab.found[tab.i] + ' ';
  input.value = head + tab.rest;
  input.setSelectionRange(head.length, head.length);
  tab.value = input.value;
  tab.end = head.length;
  state.tab = tab;
  return true;
}

function keys(e) {
  if (e.key === 'Tab' && !e.shiftKey && !e.altKey && !e.ctrlKey) {
    if (complete(e.target)) e.preventDefault();
    return;
  }
  state.tab = null;
  if (e.key === 'ArrowUp') {
    e.preventDefault();
    recall(-1);
  } else if (e.key === 'ArrowDown') {
    e.preventDefault();
    recall(1);
  }
}

// ---- Wiring ----

$('login').addEventListener('submit', (e) => {
  e.preventDefault();
  const name = $('name').value.trim();
  if (!name) return;
  if (state.naming || state.me) return;
  $('login-error').textContent = '';
  state.wanted = { name, password: $('password').value || undefined };
  if (state.open) takeName();
});
$('send-form').addEventListener('submit', submit);
$('register-open').addEventListener('click', () => ($('register').hidden ? openRegister() : closeRegister()));
$('register').addEventListener('submit', submitRegister);
$('reg-cancel').addEventListener('click', closeRegister);
$('register').addEventListener('keydown', (e) => {
  if (e.key === 'Escape') closeRegister();
});
$('log').addEventListener('scroll', () => {
  const log = $('log');
  state.stick = log.scrollHeight - log.scrollTop - log.clientHeight < 40;
});
// A smaller log (a banner, a rotated phone) keeps showing the newest line.
new ResizeObserver(() => {
  if (state.stick) $('log').scrollTop = $('log').scrollHeight;
}).observe($('log'));
$('composer').addEventListener('keydown', keys);
$('to-all').addEventListener('click', () => setTarget({ kind: 'all' }));
$('rooms-refresh').addEventListener('click', () => request({ op: 'rooms' }));
$('room-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('room-name').value.trim();
  if (!room) return;
  $('room-name').value = '';
  join(room);
});

// Keep-alive and a check for a connection that died without a close: the
// broker answers every ping, so a minute of silence means it is gone.
setInterval(() => {
  if (!state.open) return;
  if (Date.now() - state.lastHeard > SILENT_MS) drop();
  else request({ op: 'ping' });
}, PING_EVERY_MS);
// Rooms come and go without notice to outsiders: look again now and then.
setInterval(() => {
  if (state.open && state.me) request({ op: 'rooms' });
}, ROOMS_EVERY_MS);

renderTarget();
connect();
