// The web door in a real browser: Chromium pages (alice and bob, each in a
// context of its own, and for a while erin) and native users on raw TCP
// (carol, dave) talk to one broker with a database (accounts, stored
// messages, room history). Run by broker/tests/browser/mod.rs, which starts
// the broker:
//
//   node e2e/browser.mjs <page-url> <native-host:port> <screenshot-dir>
//
// Phases, told to the Rust side by lines on stdout:
//   1. the chat checks, then the accounts: alice and bob register in their
//      pages; alice's page closes, carol sends to her, a new page logs in
//      with her password and shows it "delivered late"; erin joins a room
//      and sees its "history". Then `READY-FOR-SHUTDOWN`: the test stops the
//      broker;
//   2. the shutdown banner on both pages, then `READY-FOR-RESTART`: the test
//      starts a broker on the same web address and the same database;
//   3. both pages come back by themselves, logging in to their accounts
//      with the passwords they keep in memory, in their rooms again.
// Exit code 0 means every check passed; anything else prints why.

import { chromium } from 'playwright-core';
import net from 'node:net';
import fs from 'node:fs';
import path from 'node:path';

const [url, nativeAddr, shots] = process.argv.slice(2);
if (!url || !nativeAddr || !shots) {
  console.error('usage: node browser.mjs <page-url> <native-host:port> <screenshot-dir>');
  process.exit(2);
}
fs.mkdirSync(shots, { recursive: true });

/** How long one expectation may wait. */
const WAIT_MS = 10000;
/** The page marks a stored message "delivered late" when it is older than
 *  the login by more than this (LATE_MS in broker/web/app.js). */
const LATE_MS = 3000;
/** The page's first reconnect comes after about 1 s, the next after 2 s. */
const RECONNECT_MS = 15000;
const started = Date.now();
// Never hang the Rust test: give up well inside its own deadline.
setTimeout(() => fail(new Error('the whole browser test took over 90 s')), 90000).unref();

// Debian's Chromium, quiet on a machine without a network. The fresh
// temporary --user-data-dir is Playwright's own: launch() makes one per run
// (and refuses the flag in `args`), and removes it on close.
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];

// ---- A native user over raw TCP (docs/protocol.md) ----

class Native {
  constructor(sock, name) {
    this.sock = sock;
    this.name = name;
    this.buf = Buffer.alloc(0);
    /** Frames read and not yet taken by an expectation. */
    this.frames = [];
    this.waiters = [];
    sock.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.parse();
    });
    sock.on('error', () => {});
  }

  static async connect(addr, name) {
    const at = addr.lastIndexOf(':');
    const sock = net.createConnection({ host: addr.slice(0, at), port: Number(addr.slice(at + 1)) });
    await new Promise((ok, no) => sock.once('connect', ok).once('error', no));
    const n = new Native(sock, name);
    await n.expect((f) => f.line.startsWith('HELLO '), 'HELLO');
    n.send(`NAME ${name}`);
    await n.expect((f) => f.line === `OK NAME ${name}`, `OK NAME ${name}`);
    return n;
  }

  send(line) {
    this.sock.write(`${line}\n`);
  }

  /** Splits the buffer into frames; MSG and INFO carry a counted body. */
  parse() {
    for (;;) {
      const lf = this.buf.indexOf(10);
      if (lf < 0) return;
      const line = this.buf.subarray(0, lf).toString();
      const counted = /^(MSG|INFO) .*?(\d+)$/.exec(line);
      let body = null;
      let used = lf + 1;
      if (counted) {
        const len = Number(counted[2]);
        if (this.buf.length < lf + 1 + len + 1) return;
        body = this.buf.subarray(lf + 1, lf + 1 + len).toString();
        used = lf + 1 + len + 1;
      }
      this.buf = this.buf.subarray(used);
      this.frames.push({ line, body });
      this.wake();
    }
  }

  wake() {
    for (const w of [...this.waiters]) {
      const i = this.frames.findIndex(w.pred);
      if (i >= 0) {
        const [f] = this.frames.splice(i, 1);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        clearTimeout(w.timer);
        w.ok(f);
      }
    }
  }

  /** The first frame (read or to come) that `pred` accepts. */
  expect(pred, what) {
    return new Promise((ok, no) => {
      const w = { pred, ok };
      w.timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        no(new Error(`${this.name}: no ${what} within ${WAIT_MS} ms; got ${JSON.stringify(this.frames)}`));
      }, WAIT_MS);
      this.waiters.push(w);
      this.wake();
    });
  }

  /** The next MSG from `from` with body `text`, as {id, from, kind, ts, body}. */
  async msg(from, text) {
    const f = await this.expect((x) => x.line.startsWith(`MSG `) && x.line.split(' ')[2] === from && x.body === text,
      `MSG from ${from} ${JSON.stringify(text)}`);
    const [, id, , kind, ts] = f.line.split(' ');
    return { id: Number(id), from, kind, ts: Number(ts), body: f.body };
  }
}

// ---- The pages ----

const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  headless: true,
  args: CHROMIUM_ARGS,
});
/** Everything that would mean the page misbehaved, per page. */
const trouble = [];
const pages = {};

async function openPage(name, viewport = { width: 1100, height: 720 }) {
  // A context of its own: its own cookies and storage, like another person.
  const context = await browser.newContext({ viewport });
  const page = await context.newPage();
  page.setDefaultTimeout(WAIT_MS);
  page.on('dialog', (d) => {
    trouble.push(`${name}: a dialog opened: ${d.type()} ${JSON.stringify(d.message())}`);
    d.dismiss().catch(() => {});
  });
  page.on('pageerror', (e) => trouble.push(`${name}: page error: ${e.message}`));
  page.on('console', (m) => {
    if (m.type() === 'error') console.log(`[${name} console] ${m.text()}`);
  });
  await page.goto(url);
  return page;
}

async function login(page, name) {
  await page.fill('#name', name);
  await page.click('#join-btn');
  await page.waitForFunction((n) => document.getElementById('me').textContent === n, name);
  await page.locator('#chat-view').waitFor({ state: 'visible' });
}

/** Types `text` into the composer and presses Enter. */
async function say(page, text) {
  await page.fill('#composer', text);
  await page.press('#composer', 'Enter');
}

/** The newest message line from `from` whose text is exactly `text`;
 *  returns its kind tag. */
async function seen(page, from, text) {
  const line = page.locator(`#log li.msg[data-from="${from}"]`).filter({ hasText: text }).last();
  await line.waitFor();
  const got = await line.locator('.text').textContent();
  if (got !== text) throw new Error(`${from}'s message shows ${JSON.stringify(got)}, not ${JSON.stringify(text)}`);
  return line.locator('.tag').textContent();
}

/** Waits until our own message `text` has a receipt line containing `part`. */
async function receipt(page, text, part) {
  await page.locator('#log li.own').filter({ hasText: text }).last()
    .locator('.receipt').filter({ hasText: part }).waitFor();
}

async function noticed(page, text, timeout = WAIT_MS) {
  await page.locator('#log li.notice').filter({ hasText: text }).last().waitFor({ timeout });
}

async function target(page, want) {
  await page.locator('#target').filter({ hasText: want }).waitFor();
}

function check(cond, what) {
  if (!cond) throw new Error(what);
}

async function step(what, fn) {
  const t = Date.now();
  await fn();
  console.log(`ok   ${what} (${Date.now() - t} ms)`);
}

async function shot(page, file) {
  await page.screenshot({ path: path.join(shots, file) });
}

/** A line for the Rust side, which reads our stdout to know the phase. */
function tell(line) {
  console.log(line);
}

async function fail(err) {
  console.log(`FAIL ${err.stack ?? err}`);
  for (const [name, page] of Object.entries(pages)) {
    await page.screenshot({ path: path.join(shots, `fail-${name}.png`) }).catch(() => {});
  }
  await browser.close().catch(() => {});
  process.exit(1);
}

// ---- The scenario ----

try {
  const carol = await Native.connect(nativeAddr, 'carol');

  await step('alice and bob take their names; presence is live', async () => {
    pages.alice = await openPage('alice');
    pages.bob = await openPage('bob');
    await login(pages.alice, 'alice');
    await carol.expect((f) => f.line === 'JOINED alice', 'JOINED alice');
    await login(pages.bob, 'bob');
    await carol.expect((f) => f.line === 'JOINED bob', 'JOINED bob');
    const { alice, bob } = pages;
    await alice.locator('#users li[data-name="bob"]').waitFor();
    await alice.locator('#users li[data-name="carol"]').waitFor();
    await bob.locator('#users li[data-name="alice"]').waitFor();
    await noticed(alice, 'bob is online.');
  });

  await step('a taken name is refused at the name prompt (NAME_TAKEN)', async () => {
    const page = await openPage('mallory', { width: 375, height: 740 });
    await page.fill('#name', 'Alice');
    await page.click('#join-btn');
    await page.locator('#login-error').filter({ hasText: 'NAME_TAKEN' }).waitFor();
    check(await page.locator('#chat-view').isHidden(), 'the chat opened despite NAME_TAKEN');
    await shot(page, 'name-taken-375.png');
    await page.context().close();
  });

  let { alice } = pages;
  const { bob } = pages;

  await step('alice → bob direct, tagged direct, "read by bob" at alice', async () => {
    await alice.click('#users li[data-name="bob"] .pick');
    await target(alice, 'To bob');
    await say(alice, 'hi bob');
    check(await seen(bob, 'alice', 'hi bob') === 'direct', 'bob: kind tag is not direct');
    await receipt(alice, 'hi bob', 'sent to 1');
    await receipt(alice, 'hi bob', 'read by bob');
  });

  await step('bob → alice direct', async () => {
    await bob.click('#users li[data-name="alice"] .pick');
    await say(bob, 'hi alice');
    check(await seen(alice, 'bob', 'hi alice') === 'direct', 'alice: kind tag is not direct');
  });

  await step('alice → everyone reaches carol (native) as MSG … all …', async () => {
    await alice.click('#to-all');
    await target(alice, 'To everyone');
    await say(alice, 'hello everyone');
    const m = await carol.msg('alice', 'hello everyone');
    check(m.kind === 'all', `carol got kind ${m.kind}`);
    check(Math.abs(m.ts - Date.now()) < 60000, `carol got ts ${m.ts}`);
    check(await seen(bob, 'alice', 'hello everyone') === 'all', 'bob: kind tag is not all');
    // A receipt from the native side shows at the web sender too.
    carol.send(`RECV ${m.id} alice`);
    await receipt(alice, 'hello everyone', 'sent to 2');
    await receipt(alice, 'hello everyone', 'carol');
  });

  await step('carol (native) → alice,bob shows at both, tagged multi', async () => {
    carol.send('SEND alice,bob :hello from nc');
    await carol.expect((f) => /^ACK \d+ 2$/.test(f.line), 'ACK … 2');
    check(await seen(alice, 'carol', 'hello from nc') === 'multi', 'alice: kind tag is not multi');
    check(await seen(bob, 'carol', 'hello from nc') === 'multi', 'bob: kind tag is not multi');
    // Both pages send RECV for what they show.
    await carol.expect((f) => f.line.startsWith('RCPT ') && f.line.endsWith(' alice'), 'RCPT … alice');
    await carol.expect((f) => f.line.startsWith('RCPT ') && f.line.endsWith(' bob'), 'RCPT … bob');
  });

  await step('ticking bob and carol sends to both (multi)', async () => {
    await alice.check('#users li[data-name="bob"] input[type=checkbox]');
    await alice.check('#users li[data-name="carol"] input[type=checkbox]');
    await target(alice, 'To bob, carol');
    await say(alice, 'to you two');
    check((await carol.msg('alice', 'to you two')).kind === 'multi', 'carol: not multi');
    check(await seen(bob, 'alice', 'to you two') === 'multi', 'bob: kind tag is not multi');
  });

  await step('#lobby: alice joins by name, bob from the room list; bob sees it tagged #lobby', async () => {
    await alice.fill('#room-name', '#lobby');
    await alice.press('#room-name', 'Enter');
    await target(alice, 'To #lobby');
    await bob.click('#rooms-refresh');
    await bob.click('#rooms li[data-room="#lobby"] [data-testid=join]');
    await noticed(alice, 'bob joined #lobby.');
    await target(bob, 'To #lobby');
    await say(alice, 'hi lobby');
    check(await seen(bob, 'alice', 'hi lobby') === '#lobby', 'bob: kind tag is not #lobby');
    await receipt(alice, 'hi lobby', 'read by bob');
  });

  await step('markup in a message stays text; no element, no dialog', async () => {
    const evil = '<img src=x onerror=alert(1)>';
    await alice.click('#users li[data-name="bob"] .pick');
    await say(alice, evil);
    await seen(bob, 'alice', evil);
    await receipt(alice, evil, 'read by bob');
    for (const [name, page] of [['alice', alice], ['bob', bob]]) {
      check(await page.locator('#log img').count() === 0, `${name}: an <img> is in the log`);
    }
    check(trouble.length === 0, trouble.join('\n'));
  });

  await step('keyboard: Tab completes a name, Up recalls the last line', async () => {
    await alice.fill('#composer', 'ca');
    await alice.press('#composer', 'Tab');
    check(await alice.inputValue('#composer') === 'carol ', `Tab gave ${await alice.inputValue('#composer')}`);
    await alice.fill('#composer', '');
    await alice.press('#composer', 'ArrowUp');
    check(await alice.inputValue('#composer') === '<img src=x onerror=alert(1)>', 'Up did not recall the last line');
    await alice.fill('#composer', '');
  });

  await step('a native user comes and goes: notices and the online list', async () => {
    const dave = await Native.connect(nativeAddr, 'dave');
    await noticed(alice, 'dave is online.');
    await alice.locator('#users li[data-name="dave"]').waitFor();
    dave.send('QUIT');
    await dave.expect((f) => f.line === 'BYE', 'BYE');
    await noticed(alice, 'dave went offline (quit).');
    await alice.locator('#users li[data-name="dave"]').waitFor({ state: 'detached' });
  });

  await step('to someone offline: the error; to bob and dave: "not online: dave"', async () => {
    await say(alice, '/to dave');
    await target(alice, 'To dave');
    await say(alice, 'are you there?');
    await noticed(alice, 'Not sent to dave: NO_SUCH_USER');
    await say(alice, '/to bob,dave');
    await target(alice, 'To bob, dave');
    await say(alice, 'one of you');
    await receipt(alice, 'one of you', 'sent to 1 · not online: dave');
    await seen(bob, 'alice', 'one of you');
  });

  await step('screenshots: alice (light and dark), bob, and bob at 375 px', async () => {
    await shot(alice, 'alice.png');
    await alice.emulateMedia({ colorScheme: 'dark' });
    await shot(alice, 'alice-dark.png');
    await alice.emulateMedia({ colorScheme: 'light' });
    await shot(bob, 'bob.png');
    await bob.setViewportSize({ width: 375, height: 740 });
    await shot(bob, 'bob-375.png');
    // Nothing may scroll sideways: not the page, not a panel inside it.
    const wide = await bob.evaluate(() => ['html', '.top', '.side', '#log', '.composer']
      .map((sel) => document.querySelector(sel))
      .filter((e) => e.scrollWidth > e.clientWidth)
      .map((e) => `${e.tagName.toLowerCase()}.${e.className} is ${e.scrollWidth} px wide in ${e.clientWidth}`));
    check(wide.length === 0, `at 375 px: ${wide.join('; ')}`);
  });

  await step('alice registers her name in the page: two passwords, the errors, then "now yours"', async () => {
    check(await alice.locator('#account').isHidden(), 'alice: "account" shows before registering');
    await alice.click('#register-open');
    await alice.locator('#register').waitFor({ state: 'visible' });
    check(await alice.evaluate(() => document.activeElement.id) === 'reg-password', 'the first password field has no focus');
    await alice.fill('#reg-password', 'alice-secret');
    await alice.fill('#reg-again', 'alice-secreT');
    await alice.click('#reg-submit');
    await alice.locator('#register-note').filter({ hasText: 'The two passwords differ' }).waitFor();
    // The broker judges the rules: too short is BAD_PASSWORD, said plainly.
    await alice.fill('#reg-password', 'short');
    await alice.fill('#reg-again', 'short');
    await alice.press('#reg-again', 'Enter');
    await alice.locator('#register-note').filter({ hasText: 'BAD_PASSWORD: A password is 8 to 128 characters' }).waitFor();
    await shot(alice, 'register-form.png');
    await alice.fill('#reg-password', 'alice-secret');
    await alice.fill('#reg-again', 'alice-secret');
    await alice.click('#reg-submit');
    await noticed(alice, 'alice is now yours: log in with this password next time.');
    await alice.locator('#register').waitFor({ state: 'hidden' });
    await alice.locator('#account').waitFor({ state: 'visible' });
    check(await alice.locator('#register-open').isHidden(), 'alice: "Register this name" still shows');
    await shot(alice, 'account.png');
  });

  await step('bob registers too (after the restart his page must log in with it)', async () => {
    await bob.click('#register-open');
    await bob.fill('#reg-password', 'bob-secret-1');
    await bob.fill('#reg-again', 'bob-secret-1');
    await shot(bob, 'register-375.png');
    await bob.press('#reg-again', 'Enter');
    await noticed(bob, 'bob is now yours');
    await bob.locator('#account').waitFor({ state: 'visible' });
  });

  let sentAway;
  await step('alice closes her page; carol (native) sends to her: stored, counted as queued', async () => {
    await alice.context().close();
    delete pages.alice;
    await carol.expect((f) => f.line === 'LEFT alice disconnect', 'LEFT alice disconnect');
    carol.send('SEND alice :while you were away');
    const ack = await carol.expect((f) => f.line.startsWith('ACK '), 'ACK');
    check(/^ACK \d+ 1$/.test(ack.line), `carol got ${ack.line}, not "ACK <id> 1" (stored for alice)`);
    sentAway = { id: Number(ack.line.split(' ')[1]), at: Date.now() };
  });

  await step('erin joins #lobby later: its last messages show as "history", live ones not', async () => {
    const erin = await openPage('erin');
    pages.erin = erin;
    await login(erin, 'erin');
    const joinedAt = Date.now();
    await erin.fill('#room-name', 'lobby');
    await erin.press('#room-name', 'Enter');
    await target(erin, 'To #lobby');
    const old = erin.locator('#log li.msg[data-from="alice"]').filter({ hasText: 'hi lobby' });
    await old.waitFor();
    check(await old.locator('.marker').textContent() === 'history', 'erin: "hi lobby" has no "history" marker');
    check(Number(await old.getAttribute('data-ts')) < joinedAt, 'erin: "hi lobby" does not keep its original time');
    await bob.click('#rooms li[data-room="#lobby"] .pick');
    await say(bob, 'live in the lobby');
    check(await seen(erin, 'bob', 'live in the lobby') === '#lobby', 'erin: kind tag is not #lobby');
    const live = erin.locator('#log li.msg[data-from="bob"]').filter({ hasText: 'live in the lobby' });
    check(await live.locator('.marker').count() === 0, 'erin: a live message is marked');
    await shot(erin, 'history.png');
    await erin.context().close();
    delete pages.erin;
  });

  await step('alice in a new page: NAME_OWNED asks for the password, a wrong one is refused, the right one brings the stored message "delivered late"', async () => {
    alice = await openPage('alice');
    pages.alice = alice;
    await alice.fill('#name', 'alice');
    await alice.click('#join-btn');
    await alice.locator('#login-error').filter({ hasText: 'this name is an account — enter its password' }).waitFor();
    check(await alice.evaluate(() => document.activeElement.id) === 'password', 'NAME_OWNED: the password field has no focus');
    await shot(alice, 'name-owned.png');
    await alice.fill('#password', 'not-her-password');
    await alice.press('#password', 'Enter');
    await alice.locator('#login-error').filter({ hasText: 'BAD_PASSWORD: wrong password for alice' }).waitFor();
    check(await alice.locator('#chat-view').isHidden(), 'the chat opened despite BAD_PASSWORD');
    await shot(alice, 'bad-password.png');
    // The stored message must be older than the login by more than the
    // page's threshold; the steps above usually took that long already.
    const wait = sentAway.at + LATE_MS + 300 - Date.now();
    if (wait > 0) await new Promise((ok) => { setTimeout(ok, wait); });
    await alice.fill('#password', 'alice-secret');
    await alice.click('#join-btn');
    // After a wrong try the broker answers no sooner than 250 ms: the page
    // says it is checking meanwhile.
    await alice.locator('#login-wait').filter({ hasText: 'checking…' }).waitFor();
    await alice.waitForFunction(() => document.getElementById('me').textContent === 'alice');
    const loggedIn = Date.now();
    const late = alice.locator('#log li.msg[data-from="carol"]').filter({ hasText: 'while you were away' });
    await late.waitFor();
    check(await late.getAttribute('data-id') === String(sentAway.id), 'the stored message has another id');
    check(await late.locator('.marker').textContent() === 'delivered late', 'no "delivered late" marker');
    check(await late.locator('.tag').textContent() === 'direct', 'the stored message is not tagged direct');
    const ts = Number(await late.getAttribute('data-ts'));
    check(ts <= sentAway.at && ts < loggedIn - LATE_MS, `the stored message shows ts ${ts}, not its original time`);
    check(await late.locator('time').getAttribute('datetime') === new Date(ts).toISOString(), 'its time is not the original one');
    // Shown, so carol gets her receipt.
    await carol.expect((f) => f.line === `RCPT ${sentAway.id} alice`, `RCPT ${sentAway.id} alice`);
    await alice.locator('#account').waitFor({ state: 'visible' });
    check(await alice.locator('#register-open').isHidden(), 'alice: "Register this name" shows for an account');
    // Back in #lobby, for the restart below; its history comes marked.
    await alice.fill('#room-name', '#lobby');
    await alice.press('#room-name', 'Enter');
    await target(alice, 'To #lobby');
    await alice.locator('#log li.msg.history').filter({ hasText: 'live in the lobby' }).waitFor();
    await shot(alice, 'late.png');
    await alice.emulateMedia({ colorScheme: 'dark' });
    await shot(alice, 'late-dark.png');
    await alice.emulateMedia({ colorScheme: 'light' });
  });

  tell('READY-FOR-SHUTDOWN');
  await step('shutdown: a clear banner on both pages, then "Reconnecting"', async () => {
    for (const page of [alice, bob]) {
      await page.locator('#banner').filter({ hasText: 'shutting down' }).waitFor();
    }
    await carol.expect((f) => f.line.startsWith('SHUTDOWN'), 'SHUTDOWN');
    await alice.locator('#banner').filter({ hasText: 'Reconnecting' }).waitFor();
    await shot(alice, 'shutdown.png');
  });

  tell('READY-FOR-RESTART');
  await step('back by themselves: their accounts (same database), #lobby again, talking', async () => {
    // Their names are owned now: without the passwords the pages keep in
    // memory (typed at the prompt, or registered) they would be refused.
    for (const [name, page] of [['alice', alice], ['bob', bob]]) {
      await noticed(page, `Reconnected as ${name}.`, RECONNECT_MS);
      await noticed(page, 'Back in #lobby.');
      check(await page.locator('#banner').isHidden(), `${name}: the banner is still up`);
      check(await page.locator('#chat-view').isVisible(), `${name}: back at the name prompt`);
    }
    await alice.click('#rooms li[data-room="#lobby"] .pick');
    await say(alice, 'back again');
    check(await seen(bob, 'alice', 'back again') === '#lobby', 'bob: kind tag is not #lobby');
    const live = bob.locator('#log li.msg[data-from="alice"]').filter({ hasText: 'back again' });
    check(await live.locator('.marker').count() === 0, 'bob: a live message is marked');
    // Rejoining replayed #lobby's history: nothing shows twice.
    const twice = await bob.locator('#log li.msg').filter({ hasText: 'hi lobby' }).count();
    check(twice === 1, `bob: "hi lobby" shows ${twice} times after the rejoin`);
    await shot(bob, 'reconnected-375.png');
  });

  check(trouble.length === 0, trouble.join('\n'));
  console.log(`browser test passed in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  await browser.close();
  process.exit(0);
} catch (e) {
  await fail(e);
}
