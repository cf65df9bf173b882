// The technician app's page: sign-in, devices, and the live session view.
//
// Session events arrive on one Tauri channel as binary messages (see src/wire.rs): 0x02 + a JSON event,
// or, where the app has no native view, 0x01 + H.264 access unit (raw bytes, decoded here with
// WebCodecs and drawn on a canvas). With a native view (X11) the app draws the session itself in a
// window over the stage: the page tells it where the stage is and sends mouse events in device
// pixels, which the app maps through the transform it draws with.
'use strict';

const { invoke, Channel } = window.__TAURI__.core;
const $ = (id) => document.getElementById(id);

// Refusals and failures, in plain words. The relay's own sentence is shown under the headline; for
// the version error it is the headline's text itself, since it names both versions.
const WORDS = {
  STREAMER_VERSION_UNSUPPORTED: ['This computer\'s streamer must be updated before you can connect', null],
  AUTHENTICATION_FAILED: ['Sign-in failed', 'The e-mail address or password is wrong, or your sign-in has expired.'],
  // The relay's sentence says for how long: it is the text under the headline.
  TOO_MANY_ATTEMPTS: ['Sign-in is paused after too many wrong passwords', null],
  CREDENTIAL_REVOKED: ['Access was revoked', 'Your team revoked this sign-in or device. Sign in again, or ask an admin.'],
  CREDENTIAL_NOT_ALLOWED: ['Not allowed here', 'This kind of sign-in cannot be used for that.'],
  FORBIDDEN: ['Not allowed', 'Your role in the team does not allow this.'],
  CONNECTED_ELSEWHERE: ['Connected elsewhere', 'The remote computer connected to the relay again on another connection, which replaced this one.'],
  DEVICE_NOT_FOUND: ['Device not found', 'The device was removed from your team, or belongs to another team.'],
  DEVICE_OFFLINE: ['The computer is offline', 'Its streamer is not connected to the relay right now.'],
  DEVICE_BUSY: ['The computer is already in a session', 'Only one technician can be connected at a time.'],
  SESSION_CODE_INVALID: ['That session code does not work', 'Codes are 9 digits and expire after 10 minutes. Ask the end user for the code on their screen.'],
  RECORDING_UNAVAILABLE: ['The session cannot be recorded right now', 'Your team records every session, so the relay will not connect until recording works again.'],
  SESSION_DECLINED: ['The end user declined the session', 'They chose not to share their screen.'],
  TOOL_FORBIDDEN: ['Your team does not allow this', 'The team owner or an admin can switch the clipboard, chat and file transfer on in the console\'s settings.'],
  TOOL_UNSUPPORTED: ['That computer\'s streamer is too old for this', 'Update the streamer on that computer to use the clipboard, chat or file transfer.'],
  FILE_TOO_LARGE: ['That file is larger than your team allows', null],
  RATE_LIMITED: ['Too many attempts', 'Wait a moment, then try again.'],
  RELAY_SHUTTING_DOWN: ['The relay is restarting', 'Try again in a minute.'],
  PROTOCOL_VERSION_UNSUPPORTED: ['This app must be updated', 'The relay no longer speaks this app\'s protocol version.'],
  MALFORMED_VERSION: ['Version not understood', 'The relay could not read a version number.'],
  TIMEOUT: ['The relay did not answer in time', 'Check your network connection and try again.'],
  UNREACHABLE: ['Cannot reach the relay', 'Nothing answered at that address. Check the relay\'s address (host, or host:port; port 443 when none is given) and your network connection.'],
  CERTIFICATE: ['The relay\'s certificate is not trusted', 'This app only talks to a relay whose certificate it can check. If your relay uses its own certificate authority, start the app with --ca FILE (or TECHNICIAN_CA=FILE) naming that authority\'s certificate, which your relay\'s operator has; otherwise tell the operator that the certificate is not valid for this address.'],
  ADDRESS: ['That is not a relay address', null],
  LINK: ['The connection to the relay failed', 'Check your network connection and try again.'],
  CA_FILE: ['The relay\'s certificate authority file cannot be used', null],
  TLS: ['Secure connection failed', null],
  INPUT: ['Check what you entered', null],
  WINDOW: ['The window cannot do that here', 'Full screen needs the desktop\'s window manager; use the window\'s own maximise instead.'],
  NOT_SIGNED_IN: ['You are signed out', 'Sign in again.'],
  NO_SESSION: ['The session has ended', null],
  NO_NATIVE_VIEW: ['This app draws the session in the page here', null],
  MALFORMED_MESSAGE: ['The relay could not read what this app sent', 'Update the app; if that does not help, tell your relay\'s operator.'],
  UNEXPECTED_MESSAGE: ['The relay did not expect what this app sent', 'Update the app; if that does not help, tell your relay\'s operator.'],
  MESSAGE_TOO_LARGE: ['Too much data at once', 'The relay refused a message larger than it accepts.'],
  INTERNAL_ERROR: ['The relay had a problem', 'Try again; if it keeps happening, tell your relay\'s operator.'],
};

const ENDED = {
  TECHNICIAN_LEFT: 'You ended the session.',
  END_USER_ENDED: 'The end user ended the session.',
  TECHNICIAN_DISCONNECTED: 'Your connection to the relay was lost.',
  STREAMER_DISCONNECTED: 'The remote computer disconnected.',
  TIME_LIMIT_REACHED: 'The recorded session reached its time limit.',
  RECORDING_FAILED: 'The recording could not be saved, and a recorded session never goes on unrecorded.',
  RELAY_SHUTTING_DOWN: 'The relay is restarting.',
  CREDENTIAL_REVOKED: 'A sign-in or device in the session was revoked.',
  PROTOCOL_ERROR: 'The remote computer sent something the relay could not accept.',
  ENDED_BY_ADMIN: 'An owner or admin of your team ended the session from the relay\'s console.',
};

function show(view) {
  for (const v of ['signin-view', 'devices-view', 'session-view']) $(v).classList.toggle('hidden', v !== view);
}

// A notice in the bottom corner, away from the session bar (End session, Files). One that only
// informs closes by itself after 10 seconds; an error stays until dismissed.
let noticeTimer = null;
function notice(title, text, detail, kind) {
  $('notice-title').textContent = title;
  $('notice-text').textContent = text || '';
  $('notice-detail').textContent = detail || '';
  $('notice').className = 'notice' + (kind === 'info' ? ' info' : '');
  $('notice').dataset.code = kind || '';
  clearTimeout(noticeTimer);
  if (kind === 'info') noticeTimer = setTimeout(hideNotice, 10000);
}

function failure(f) {
  const code = (f && f.code) || 'INTERNAL_ERROR';
  const message = (f && f.message) || String(f);
  const [title, text] = WORDS[code] || ['Something went wrong', null];
  if (text) notice(title, text, `${message} (${code})`, code);
  else notice(title, message, code, code);
}

let refreshTimer = null;
let lastDevices = [];

function hideNotice() { $('notice').classList.add('hidden'); }
$('notice-close').onclick = hideNotice;

// ---- Sign-in and devices -------------------------------------------------------------------------

async function start() {
  const d = await invoke('defaults');
  $('relay').value = d.relay || '';
  $('email').value = d.email || '';
  $('version').textContent = `Version ${d.version}`;
  signedOut();
}

// Back at the sign-in page (at start, after signing out, or when the relay refused the token).
function signedOut() {
  clearInterval(refreshTimer);
  clearTabs();
  current = null;
  session = null;
  sendArea();
  $('who').textContent = '';
  $('sign-out').classList.add('hidden');
  show('signin-view');
  ($('relay').value && $('email').value ? $('password') : $('relay')).focus();
}

$('sign-out').onclick = async () => {
  try {
    await invoke('sign_out');
  } catch (f) {
    // Signing out of a sign-in that has already ended is what was asked for: no error.
    if (!['NOT_SIGNED_IN', 'AUTHENTICATION_FAILED', 'CREDENTIAL_REVOKED'].includes(f && f.code)) failure(f);
  }
  signedOut();
};

$('signin-form').onsubmit = async (e) => {
  e.preventDefault();
  hideNotice();
  $('signin-button').disabled = true;
  try {
    const me = await invoke('sign_in', { relay: $('relay').value, email: $('email').value, password: $('password').value });
    $('password').value = '';
    $('relay').value = me.relay;
    $('who').textContent = `${me.name} · ${me.relay}`;
    $('sign-out').classList.remove('hidden');
    await loadDevices();
  } catch (f) {
    failure(f);
  } finally {
    $('signin-button').disabled = false;
  }
};

// The device list, shown and then kept up to date from the relay every 3 seconds while it is on
// screen (a device coming online or going offline appears without Refresh).
async function loadDevices() {
  await refreshDevices();
  show('devices-view');
  clearInterval(refreshTimer);
  refreshTimer = setInterval(() => {
    if ($('devices-view').classList.contains('hidden')) return;
    refreshDevices().catch((f) => {
      const [title] = WORDS[f && f.code] || ['The list could not be updated'];
      $('devices-updated').textContent = `${title}: trying again…`;
    });
  }, 3000);
}

async function refreshDevices() {
  const devices = await invoke('devices');
  $('devices-updated').textContent = `Updated ${new Date().toLocaleTimeString()}`;
  $('no-devices').classList.toggle('hidden', devices.length > 0);
  // Rows are rebuilt only when something changed, so that a refresh never takes a click away.
  const inTabs = tabs.map((t) => (t.target.device ? t.target.device : '')).join(',');
  const same = JSON.stringify(devices) === JSON.stringify(lastDevices) && $('device-rows').children.length === devices.length && inTabs === $('device-rows').dataset.tabs;
  lastDevices = devices;
  $('device-rows').dataset.tabs = inTabs;
  if (same) return;
  const rows = $('device-rows');
  rows.textContent = '';
  for (const d of devices) {
    const tr = document.createElement('tr');
    tr.dataset.deviceId = d.id;
    const state = !d.online ? 'Offline' : d.busy ? 'In a session' : 'Online';
    const old = d.streamerVersion && olderThan(d.streamerVersion, RECORDED_STREAMER);
    const cells = [d.name, state, d.streamerVersion || '—'];
    cells.forEach((text, i) => {
      const td = document.createElement('td');
      td.textContent = text;
      if (i === 1) td.className = 'status' + (d.online ? (d.busy ? ' busy' : ' online') : '');
      if (i === 2 && old) {
        // The relay refuses it for a recorded session: said before the click, not after.
        const hint = document.createElement('div');
        hint.className = 'hint warning small';
        hint.textContent = `Older than ${RECORDED_STREAMER}: if your team records sessions, update it first.`;
        td.appendChild(hint);
        tr.classList.add('old-streamer');
      }
      tr.appendChild(td);
    });
    const td = document.createElement('td');
    const b = document.createElement('button');
    b.textContent = 'Connect';
    b.className = 'primary connect';
    // A busy device can still be asked: the relay answers DEVICE_BUSY in plain words.
    b.disabled = !d.online;
    b.onclick = () => connect({ device: d.id }, d.name);
    // A device in one of this window's tabs: its tab is shown instead.
    const tab = tabs.find((t) => t.target.device === d.id);
    if (tab) {
      b.textContent = 'Show';
      b.disabled = false;
      b.onclick = () => switchTo(tab).catch(failure);
    }
    td.appendChild(b);
    tr.appendChild(td);
    rows.appendChild(tr);
  }
}

// The oldest streamer a recorded session takes (SPEC; the relay decides, with this sentence).
const RECORDED_STREAMER = '3.5.8.0';
function olderThan(version, than) {
  const a = version.split('.').map(Number);
  const b = than.split('.').map(Number);
  for (let i = 0; i < 4; i++) {
    if ((a[i] || 0) !== (b[i] || 0)) return (a[i] || 0) < (b[i] || 0);
  }
  return false;
}

$('refresh').onclick = () => loadDevices().catch(failure);
$('code-form').onsubmit = (e) => {
  e.preventDefault();
  connect({ code: $('code').value }, 'Attended session');
};

// ---- The session ---------------------------------------------------------------------------------

const canvas = $('screen');
// What tests and the latency benchmark read (frames drawn, decoder errors, a pixel probe).
const view = (window.__view = {
  messages: 0, chunks: 0, decoded: 0, decodeMs: 0, frames: 0, drawMs: 0,
  skipped: 0, decodeErrors: 0, drawErrors: 0, probe: null, events: [],
});
const renderer = window.makeRenderer(canvas, view);
view.renderer = renderer.kind;
// The remote screen's size in pixels (what input coordinates refer to).
const remote = { width: 1280, height: 720 };
let decoder = null;
let needKey = true;
let session = null;
// The channel of the session the page shows; messages of an earlier one are ignored.
let current = null;
let countdown = null;
// What the status line shows, most urgent first: the connection, the limit, the picture, focus.
const st = { lost: null, limit: null, stalled: false, stalledSince: 0, focused: false, device: null, target: null };
let stallTimer = null;

function resetDecoder() {
  if (decoder && decoder.state !== 'closed') decoder.close();
  decoder = null;
  needKey = true;
}

// The codec string (avc1.PPCCLL) from the stream's sequence parameter set.
function codecOf(au) {
  for (let i = 0; i + 7 < au.length; i++) {
    if (au[i] === 0 && au[i + 1] === 0 && au[i + 2] === 1 && (au[i + 3] & 0x1f) === 7) {
      const hex = (b) => b.toString(16).padStart(2, '0');
      return `avc1.${hex(au[i + 4])}${hex(au[i + 5])}${hex(au[i + 6])}`;
    }
  }
  return 'avc1.42c01f';
}

// Decoded frames wait here for the next animation frame (or the end of the draw under way); when
// several arrive meanwhile, only the latest is drawn (the others are closed unseen), so that drawing
// never makes the view fall behind. (Drawing each frame at once was measured worse: see
// docs/PERFORMANCE.md.)
let pending = null;

const decodeStarted = new Map();

let drawing = false;

function decoded(frame) {
  view.decoded++;
  const started = decodeStarted.get(frame.timestamp);
  if (started !== undefined) {
    decodeStarted.delete(frame.timestamp);
    view.decodeMs += performance.now() - started;
  }
  if (pending) pending.close();
  else if (!drawing) requestAnimationFrame(draw);
  pending = frame;
}

function draw() {
  const frame = pending;
  pending = null;
  if (!frame || drawing) return;
  drawing = true;
  remote.width = frame.displayWidth;
  remote.height = frame.displayHeight;
  fitCanvas();
  const t = performance.now();
  const p = view.probe && view.probe.changedAt === null ? view.probe : null;
  renderer
    .draw(frame, p)
    .then((px) => {
      view.drawMs += performance.now() - t;
      view.frames++;
      $('waiting').classList.add('hidden');
      if (p && px) {
        p.seen = px;
        if (Math.abs(px[0] - p.rgb[0]) + Math.abs(px[1] - p.rgb[1]) + Math.abs(px[2] - p.rgb[2]) < 60) {
          p.changedAt = performance.timeOrigin + performance.now();
        }
      }
    })
    .catch((e) => {
      view.drawErrors++;
      console.error('draw', e);
    })
    .finally(() => {
      drawing = false;
      if (pending) requestAnimationFrame(draw);
    });
}

// The canvas's pixel size: the remote screen fitted into the stage, on this display's pixels.
function fitCanvas() {
  const stage = $('stage');
  const dpr = window.devicePixelRatio || 1;
  const scale = sizing === 'actual' ? 1
    : Math.min(1, (stage.clientWidth * dpr) / remote.width, (stage.clientHeight * dpr) / remote.height);
  const w = Math.max(1, Math.round(remote.width * scale));
  const h = Math.max(1, Math.round(remote.height * scale));
  if (canvas.width !== w || canvas.height !== h) {
    canvas.width = w;
    canvas.height = h;
    canvas.style.width = `${w / dpr}px`;
    canvas.style.height = `${h / dpr}px`;
  }
}

// Starts watching the view at one remote pixel: `changedAt` (ms since the epoch) is set when a frame
// drawn shows it in the colour `rgb` (within a small tolerance).
window.__watchPixel = (rx, ry, rgb) => {
  const x = Math.floor((rx * canvas.width) / remote.width);
  const y = Math.floor((ry * canvas.height) / remote.height);
  view.probe = { x, y, rgb, seen: null, changedAt: null };
};

// Latency stays bounded: when this many access units wait in the decoder (the machine cannot decode
// and draw as fast as the streamer sends), the view skips to the next keyframe and asks for one
// (at most once a second) instead of falling further behind.
const BEHIND = 4;
let catchingUp = false;
let lastKeyRequest = -Infinity;

function video(bytes) {
  const key = (bytes[1] & 1) === 1;
  const timestamp = Number(new DataView(bytes.buffer, bytes.byteOffset + 2, 8).getBigUint64(0, true));
  const data = bytes.subarray(10);
  if (needKey && !key) return;
  if (key) catchingUp = false;
  if (!key && (catchingUp || (decoder && decoder.decodeQueueSize > BEHIND))) {
    catchingUp = true;
    view.skipped++;
    const now = performance.now();
    if (now - lastKeyRequest > 1000) {
      lastKeyRequest = now;
      invoke('request_keyframe').catch(() => {});
    }
    return;
  }
  if (!decoder) {
    decoder = new VideoDecoder({
      output: decoded,
      error: (e) => {
        view.decodeErrors++;
        console.error('decoder', e);
        resetDecoder();
        invoke('request_keyframe').catch(() => {});
      },
    });
    // No description: the access units are Annex B, with parameter sets in every keyframe.
    decoder.configure({ codec: codecOf(data), optimizeForLatency: true, hardwareAcceleration: 'no-preference' });
  }
  needKey = false;
  if (decodeStarted.size < 64) decodeStarted.set(timestamp, performance.now());
  decoder.decode(new EncodedVideoChunk({ type: key ? 'key' : 'delta', timestamp, data }));
  view.chunks++;
  view.queue = decoder.decodeQueueSize;
}

function event(e) {
  // The session's events as received (tests read them when something looks wrong).
  view.events.push(e.type === 'lost' || e.type === 'ended' ? `${e.type}:${e.code || e.reason}:${e.message}` : e.type);
  if (view.events.length > 100) view.events.shift();
  switch (e.type) {
    case 'started':
      $('session-device').textContent = `${e.deviceName} · streamer ${e.streamerVersion}`;
      recording(e.recorded);
      // An attended session's tab is named after the computer, once the relay says which.
      st.device = e.deviceName;
      if (shownTab && shownTab.target.code && shownTab.name !== e.deviceName) {
        shownTab.name = e.deviceName;
        renderTabs();
      }
      break;
    case 'recording':
      recording(e.recorded);
      break;
    case 'monitors': {
      const sel = $('monitor');
      const current = sel.value;
      sel.textContent = '';
      for (const m of e.monitors) {
        const o = document.createElement('option');
        o.value = m.id;
        o.textContent = `${m.name} (${m.width}×${m.height})${m.primary ? ' · primary' : ''}`;
        sel.appendChild(o);
      }
      if (current) sel.value = current;
      break;
    }
    case 'videoConfig':
      // A new stream (monitor, size, rate or orientation): start again from its keyframe.
      resetDecoder();
      $('monitor').value = String(e.monitorId);
      $('frame-rate').value = String(e.frameRate);
      streamInfo = `${e.width}×${e.height}, ${e.frameRate} fps chosen, ${e.orientation}, H.264`;
      $('stats').textContent = streamInfo;
      screenSize = { width: e.width, height: e.height };
      applyScale();
      break;
    case 'limitWarning':
      startCountdown(e.timeLeftMs, e.limitSecs);
      break;
    case 'picture':
      // The library says after 2 s without a frame; the line counts the seconds on from there.
      st.stalled = !e.flowing;
      st.stalledSince = performance.now() - 2000;
      clearInterval(stallTimer);
      if (st.stalled) stallTimer = setInterval(renderStatus, 1000);
      renderStatus();
      break;
    case 'audioUnavailable':
      break;
    case 'tools':
      clipboardState(e.clipboard, CLIPBOARD_STATES[e.clipboard] || CLIPBOARD_STATES.unsupported);
      $('take-clipboard').classList.toggle('hidden', e.clipboard !== 'allowed');
      filesState(e.fileTransfer || 'unsupported');
      chatState(e.chat || 'unsupported');
      break;
    case 'chat':
      chatLine(st.device || 'Remote computer', e.text, false);
      break;
    case 'chatMine':
      // A line the technician sent, replayed when the tab is shown again.
      chatLine('You', e.text, true);
      break;
    case 'transfer':
      transfer(e);
      break;
    case 'clipboard':
      // From the app's clipboard thread: shared, what it sent or received, or no local clipboard.
      if (e.state === 'unavailable') clipboardState('unavailable', `Clipboard not available on this computer: ${e.message}`);
      else if (e.state === 'sent') clipboardState('allowed', `Clipboard shared · sent ${e.chars} characters`);
      else if (e.state === 'received') clipboardState('allowed', `Clipboard shared · received ${e.chars} characters`);
      else if (e.state === 'held') clipboardState('allowed', `Clipboard shared · the remote computer copied ${e.chars} characters, not pasted here`);
      else clipboardState('allowed', CLIPBOARD_STATES.allowed);
      break;
    case 'remoteClipboard':
      $('take-remote-clipboard').checked = e.taking;
      break;
    case 'toolRefused':
      // An overlay: the view does not move.
      failure(e);
      break;
    case 'ended':
      endSession(ENDED[e.reason] || 'The session ended.', e.message, e.reason);
      break;
    case 'lost':
      lostSession(e);
      break;
    case 'reconnecting':
      if (st.lost) {
        st.lost.phase = e.attempt === 1 ? 'Reconnecting…' : `Reconnecting (attempt ${e.attempt})…`;
        renderStatus();
      }
      break;
    case 'reconnected':
      if (st.lost) {
        st.lost.phase = 'back';
        // The session is over (a new one would be recorded on its own): no badge for it.
        recording(false);
        renderStatus();
      }
      break;
    case 'signedOut':
      signedOut();
      failure(e);
      break;
  }
}

// The clipboard's state in the session bar, as the relay's SessionTools decided it.
const CLIPBOARD_STATES = {
  allowed: 'Clipboard shared',
  forbidden: 'Clipboard off by your team\'s settings',
  unsupported: 'Clipboard not available: the remote computer\'s streamer is too old',
};

function clipboardState(state, text) {
  $('clipboard-state').dataset.state = state;
  $('clipboard-state').textContent = text;
}
$('take-remote-clipboard').onchange = (e) => invoke('take_remote_clipboard', { on: e.target.checked }).catch(failure);

// ---- Files ----------------------------------------------------------------------------------------

const FILES_STATES = {
  allowed: 'Files can go both ways in this session; each one is in your team\'s audit trail.',
  forbidden: 'Your team\'s settings do not allow files in sessions.',
  unsupported: 'The remote computer\'s streamer is too old for files.',
};

function filesState(state) {
  $('files-state').dataset.state = state;
  $('files-state').textContent = FILES_STATES[state] || FILES_STATES.unsupported;
  for (const id of ['send-file', 'get-file', 'remote-path']) $(id).disabled = state !== 'allowed';
}

function size(n) {
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)} GB`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)} MB`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)} KB`;
  return `${n} bytes`;
}

const OUTCOMES = {
  HashMismatch: 'arrived damaged (its SHA-256 did not match) and was not kept',
  Cancelled: 'stopped',
  Failed: 'failed',
  NotFound: 'was not found on the remote computer',
  TooLarge: 'is larger than allowed',
};

// One line per transfer: its name, which way, a progress bar, and what happened.
function transfer(e) {
  let li = document.querySelector(`#transfers li[data-id="${e.id}"]`);
  if (!li) {
    li = document.createElement('li');
    li.dataset.id = e.id;
    li.innerHTML = '<div class="name"></div><progress max="1" value="0"></progress><div class="row spread"><span class="state"></span><span><button class="link take hidden">Save</button> <button class="link decline hidden">Decline</button><button class="link cancel">Stop</button></span></div>';
    li.querySelector('.cancel').onclick = () => invoke('cancel_transfer', { id: e.id }).catch(failure);
    li.querySelector('.take').onclick = () => invoke('take_file', { id: e.id }).catch(failure);
    li.querySelector('.decline').onclick = () => invoke('decline_file', { id: e.id }).catch(failure);
    $('transfers').prepend(li);
  }
  const way = e.direction === 'sending' ? 'to the remote computer' : 'from the remote computer';
  li.querySelector('.name').textContent = `${e.name} · ${way}`;
  li.className = e.state;
  const bar = li.querySelector('progress');
  const stateText = li.querySelector('.state');
  li.querySelector('.cancel').classList.toggle('hidden', e.state !== 'progress');
  li.querySelector('.take').classList.toggle('hidden', e.state !== 'offered');
  li.querySelector('.decline').classList.toggle('hidden', e.state !== 'offered');
  if (e.state === 'offered') {
    // Nobody here asked for it: it waits for the technician's answer (the end user may be anyone).
    bar.value = 0;
    stateText.textContent = `${size(e.size)} offered by the remote computer, which you did not ask for`;
    if ($('files-panel').classList.contains('hidden')) toggleFiles(true);
  } else if (e.state === 'progress') {
    bar.value = e.size ? e.done / e.size : 1;
    const resumed = e.resumedFrom > 0 ? ` · resumed at ${size(e.resumedFrom)}` : '';
    stateText.textContent = `${size(e.done)} of ${size(e.size)}${resumed}`;
  } else if (e.state === 'verified') {
    bar.value = 1;
    stateText.textContent = `${size(e.size)}, verified (SHA-256 ${e.sha256.slice(0, 16)}…)${e.path ? ` · saved as ${e.path}` : ' · in the end user\'s Downloads folder'}`;
  } else {
    stateText.textContent = `${OUTCOMES[e.outcome] || 'stopped'}: ${e.message}`;
  }
}

function toggleFiles(open) {
  if (open) toggleChat(false, false);
  $('files-panel').classList.toggle('hidden', !open);
  $('session-view').classList.toggle('files-open', open);
  $('files-button').setAttribute('aria-expanded', String(open));
  if (open) invoke('files_folder').then((f) => { $('files-folder').textContent = f; }).catch(failure);
  else $('stage').focus();
}
$('files-button').onclick = () => toggleFiles($('files-panel').classList.contains('hidden'));
$('files-close').onclick = () => toggleFiles(false);
$('files-panel').addEventListener('keydown', (e) => { if (e.key === 'Escape') toggleFiles(false); });
$('send-file').onclick = () => invoke('pick_and_send_file').catch(failure);
$('get-form').onsubmit = (e) => {
  e.preventDefault();
  invoke('get_file', { remotePath: $('remote-path').value }).then(() => { $('remote-path').value = ''; }).catch(failure);
};
// ---- Chat ----------------------------------------------------------------------------------------

const CHAT_STATES = {
  allowed: 'Messages go to the person at the remote computer; each one is in your team\'s audit trail.',
  forbidden: 'Your team\'s settings do not allow chat in sessions.',
  unsupported: 'The remote computer\'s streamer is too old for chat.',
};
let unreadChat = 0;

function chatState(state) {
  $('chat-state').dataset.state = state;
  $('chat-state').textContent = CHAT_STATES[state] || CHAT_STATES.unsupported;
  $('chat-line').disabled = state !== 'allowed';
  $('chat-send').disabled = state !== 'allowed';
}

// A line in the chat's log: who wrote it and what, as text (never markup). While the panel is
// closed, the Chat button counts the end user's unread lines; nothing opens over the view.
function chatLine(from, text, mine) {
  const li = document.createElement('li');
  li.className = mine ? 'mine' : 'theirs';
  const who = document.createElement('span');
  who.className = 'from';
  who.textContent = `${from}:`;
  li.append(who, document.createTextNode(text));
  $('chat-log').append(li);
  $('chat-log').scrollTop = $('chat-log').scrollHeight;
  if (!mine && !replaying && $('chat-panel').classList.contains('hidden')) unreadChat++;
  renderChatButton();
}

function renderChatButton() {
  $('chat-button').textContent = unreadChat ? `Chat (${unreadChat})` : 'Chat';
}

// Open: the chat's input takes the keyboard (typing is for the end user to read, not for the
// remote screen). Closed: the keyboard goes back to the remote screen.
function toggleChat(open, refocus = true) {
  if (open) toggleFiles(false);
  $('chat-panel').classList.toggle('hidden', !open);
  $('session-view').classList.toggle('files-open', open || !$('files-panel').classList.contains('hidden'));
  $('chat-button').setAttribute('aria-expanded', String(open));
  if (open) {
    unreadChat = 0;
    renderChatButton();
    $('chat-line').focus();
  } else if (refocus) {
    $('stage').focus();
  }
}
$('chat-button').onclick = () => toggleChat($('chat-panel').classList.contains('hidden'));
$('chat-close').onclick = () => toggleChat(false);
$('chat-panel').addEventListener('keydown', (e) => { if (e.key === 'Escape') toggleChat(false); });
$('chat-form').onsubmit = (e) => {
  e.preventDefault();
  const text = $('chat-line').value.trim();
  if (!text) return;
  invoke('send_chat', { text }).then(() => {
    if (shownTab) remember(shownTab, { type: 'chatMine', text });
    chatLine('You', text, true);
    $('chat-line').value = '';
  }).catch(failure);
};

$('change-folder').onclick = () => invoke('pick_files_folder').then((f) => { if (f) $('files-folder').textContent = f; }).catch(failure);

// The limit as people say it: "2 minutes", "24 hours", "1 hour 30 minutes", "20 seconds".
function duration(secs) {
  const unit = (n, one) => `${n} ${one}${n === 1 ? '' : 's'}`;
  if (secs % 60) return secs < 60 ? unit(secs, 'second') : `${unit(Math.floor(secs / 60), 'minute')} ${unit(secs % 60, 'second')}`;
  const minutes = secs / 60;
  const h = Math.floor(minutes / 60);
  const m = minutes % 60;
  if (h && m) return `${unit(h, 'hour')} ${unit(m, 'minute')}`;
  return h ? unit(h, 'hour') : unit(m, 'minute');
}

// The status line: one line of fixed height under the session bar, so that nothing that happens
// during a session moves the view (and the clicks on it).
function renderStatus() {
  const line = $('session-status');
  const wanted = [];
  const button = (label, kind, onclick) => wanted.push({ label, kind, onclick });
  let kind = '';
  let text;
  if (st.lost) {
    kind = 'lost';
    if (st.lost.phase === 'back') {
      text = 'Connection lost; the relay is reachable again. The session is over: a new one is recorded on its own.';
      if (st.target && st.target.device) button(`Connect to ${st.device} again`, 'primary', reconnectDevice);
    } else {
      text = `Connection lost, ${(st.lost.phase || 'reconnecting…').toLowerCase()} What you see is the last picture received.`;
    }
    button('Back to devices', 'secondary', backToDevices);
  } else if (st.limit) {
    kind = 'warning';
    text = `This recorded session ends in ${st.limit.left}: the relay ends recorded sessions after ${duration(st.limit.secs)}. Save your work on the remote computer.`;
  } else if (st.stalled) {
    kind = 'warning';
    const secs = Math.max(2, Math.floor((performance.now() - st.stalledSince) / 1000));
    text = `No picture from the remote computer for ${secs} seconds: it or the network is not sending. The view shows the last picture received.`;
  } else if (st.focused) {
    kind = 'focused';
    text = 'Keyboard and mouse go to the remote computer.';
  } else {
    text = 'Click the remote screen to control it; the keyboard goes to it while it is outlined in blue.';
  }
  line.className = `status-line ${kind}`;
  line.dataset.state = kind || 'idle';
  $('status-text').textContent = text;
  // The buttons are replaced only when they change: a click moves the focus, which renders the
  // line again, and a button replaced under the pointer would never receive its click.
  const actions = $('status-actions');
  const key = wanted.map((b) => `${b.kind}:${b.label}`).join('|');
  if (actions.dataset.key === key) return;
  actions.dataset.key = key;
  actions.textContent = '';
  for (const b of wanted) {
    const el = document.createElement('button');
    el.textContent = b.label;
    el.className = b.kind;
    el.onclick = b.onclick;
    actions.appendChild(el);
  }
}

function lostSession(e) {
  clearInterval(countdown);
  st.limit = null;
  st.lost = { message: e.message, code: e.code, phase: 'Reconnecting…' };
  canvas.classList.add('dimmed');
  $('leave').textContent = 'Back to devices';
  renderStatus();
}

// Closes the shown tab (a lost session's, or one that could not start) and shows the list.
async function backToDevices(keepNotice) {
  setFullscreen(false).catch(() => {});
  if (shownTab) dropTab(shownTab);
  current = null;
  session = null;
  st.lost = null;
  clearInterval(countdown);
  resetDecoder();
  sendArea();
  await invoke('back_to_devices').catch(() => {});
  if (!keepNotice) hideNotice();
  await loadDevices().catch(failure);
}

// A new session with the lost session's device, in place of the lost one's tab.
async function reconnectDevice() {
  const { target, device } = st;
  if (shownTab) {
    const lost = shownTab;
    dropTab(lost);
    if (lost.id) await invoke('close_tab', { tab: lost.id }).catch(() => {});
  }
  connect(target, device);
}

function recording(on) {
  $('recording-indicator').classList.toggle('hidden', !on);
  $('not-recorded').classList.toggle('hidden', on);
}

function startCountdown(ms, limitSecs) {
  const until = performance.now() + ms;
  const tick = () => {
    const left = Math.max(0, Math.round((until - performance.now()) / 1000));
    st.limit = { left: `${Math.floor(left / 60)}:${String(left % 60).padStart(2, '0')}`, secs: limitSecs || Math.ceil(ms / 1000) };
    renderStatus();
  };
  clearInterval(countdown);
  tick();
  countdown = setInterval(tick, 250);
}

function endSession(text, detail, code) {
  setFullscreen(false).catch(() => {});
  clearInterval(countdown);
  resetDecoder();
  current = null;
  session = null;
  st.limit = null;
  st.stalled = false;
  clearInterval(stallTimer);
  // An ended session is recorded no more: the badge goes with it.
  recording(false);
  $('not-recorded').classList.add('hidden');
  sendArea();
  notice('Session ended', text, detail ? `${detail} (${code})` : code, 'info');
  loadDevices().catch(failure);
}

// A new session in a tab of its own, shown at once; the sessions in other tabs go on behind it.
async function connect(target, name) {
  hideNotice();
  clearInterval(refreshTimer);
  const channel = new Channel();
  if (shownTab) shownTab.unread = unreadChat;
  const tab = openTab(channel, target, name);
  current = channel;
  channel.onmessage = (m) => {
    const bytes = new Uint8Array(m);
    if (bytes[0] === 2) {
      const e = JSON.parse(new TextDecoder().decode(bytes.subarray(1)));
      // Every tab keeps its events; only the shown one acts on them now (tabs.js).
      if (!tabHears(tab, e)) return;
      view.messages++;
      event(e);
    } else if (bytes[0] === 1 && channel === current) {
      view.messages++;
      video(bytes);
    }
  };
  blankSession(name, target);
  try {
    const how = await invoke('connect', { target, frameRate: Number($('frame-rate').value) || null, onEvent: channel });
    tab.id = how.tab;
    renderTabs();
    if (channel !== current) return;
    native = how && how.view === 'native';
    view.mode = native ? 'native' : 'webview';
    canvas.classList.toggle('hidden', native);
    // The stream's size may have come already (its events can come before this answer).
    applyScale();
    if (how && how.frameRate) $('frame-rate').value = String(how.frameRate);
    session = channel;
    show('session-view');
    sendArea();
    $('stage').focus();
  } catch (f) {
    dropTab(tab);
    if (channel === current) current = null;
    // From the lost screen ("Connect again"): back to the list, under the refusal.
    if (!$('session-view').classList.contains('hidden')) await backToDevices(true);
    failure(f);
  }
}

// The session view emptied for `name` (a new session, or a tab shown again before its events are
// replayed into it).
function blankSession(name, target) {
  resetDecoder();
  view.frames = 0;
  Object.assign(st, { lost: null, limit: null, stalled: false, device: name, target });
  clearInterval(countdown);
  canvas.classList.remove('dimmed');
  $('leave').textContent = 'End session';
  $('waiting').classList.remove('hidden');
  recording(false);
  $('not-recorded').classList.add('hidden');
  clipboardState('', '');
  $('take-clipboard').classList.add('hidden');
  $('take-remote-clipboard').checked = false;
  filesState('unsupported');
  $('transfers').textContent = '';
  screenSize = null;
  $('stage').scrollLeft = 0;
  $('stage').scrollTop = 0;
  toggleFiles(false);
  chatState('unsupported');
  $('chat-log').textContent = '';
  unreadChat = 0;
  toggleChat(false, false);
  $('session-device').textContent = name;
  renderStatus();
}

$('leave').onclick = () => {
  if (st.lost) return backToDevices();
  // A session that is already over (NO_SESSION) leaves nothing to end: back to the list.
  invoke('leave').catch((f) => (f && f.code === 'NO_SESSION' ? backToDevices() : failure(f)));
};

// Menus give the keyboard back to the remote screen once a choice is made (or the menu is left
// with Escape), so that typing never goes into a menu by surprise.
// Key combinations the technician's own computer would act on (Alt+Tab, the Windows key) or that a
// keyboard cannot send through the page (Ctrl+Alt+Del): pressed in order, released in reverse, as
// W3C key codes with the modifiers held at each step.
const COMBOS = {
  'ctrl-alt-del': ['ControlLeft', 'AltLeft', 'Delete'],
  'alt-tab': ['AltLeft', 'Tab'],
  meta: ['MetaLeft'],
  'alt-f4': ['AltLeft', 'F4'],
  'ctrl-shift-esc': ['ControlLeft', 'ShiftLeft', 'Escape'],
  'ctrl-esc': ['ControlLeft', 'Escape'],
  print: ['PrintScreen'],
};
const MODIFIER_BITS = { ShiftLeft: 1, ControlLeft: 2, AltLeft: 4, MetaLeft: 8 };

async function sendCombo(name) {
  const codes = COMBOS[name];
  if (!codes || !session) return;
  let held = 0;
  for (const code of codes) {
    held |= MODIFIER_BITS[code] || 0;
    await invoke('key', { code, down: true, modifiers: held });
  }
  for (const code of [...codes].reverse()) {
    await invoke('key', { code, down: false, modifiers: held });
    held &= ~(MODIFIER_BITS[code] || 0);
  }
}
$('keys').onchange = () => {
  const name = $('keys').value;
  $('keys').value = '';
  $('stage').focus();
  sendCombo(name).catch(failure);
};

// ---- Size and full screen -----------------------------------------------------------------------

// 'fit': the whole remote screen, scaled down to the stage; 'actual': 1:1, the stage scrolling over
// it with its scroll bars (the wheel over the picture still scrolls the remote computer).
let sizing = 'fit';
let screenSize = null;

function applyScale() {
  const stage = $('stage');
  stage.classList.toggle('actual', sizing === 'actual');
  const dpr = window.devicePixelRatio || 1;
  // With the native view the page draws nothing: a space of the screen's size gives the stage its
  // scroll range. Without it, the canvas itself is that size.
  const space = $('scroll-space');
  const big = sizing === 'actual' && native && screenSize;
  space.style.width = big ? `${screenSize.width / dpr}px` : '0';
  space.style.height = big ? `${screenSize.height / dpr}px` : '0';
  if (!native && session) fitCanvas();
  sendArea();
}
$('scale').onchange = () => {
  sizing = $('scale').value;
  applyScale();
  $('stage').focus();
};
$('stage').addEventListener('scroll', () => sendArea());

let fullscreen = false;
async function setFullscreen(on) {
  if (on === fullscreen) return;
  await invoke('set_fullscreen', { on });
  fullscreen = on;
  document.body.classList.toggle('fullscreen', on);
  $('fullscreen').textContent = on ? 'Exit full screen' : 'Full screen';
  $('fullscreen').setAttribute('aria-pressed', String(on));
  sendArea();
}
$('fullscreen').onclick = () => {
  setFullscreen(!fullscreen).catch(failure).finally(() => $('stage').focus());
};

for (const id of ['monitor', 'frame-rate', 'keys', 'scale']) {
  $(id).addEventListener('keydown', (e) => {
    if (e.key === 'Escape') $('stage').focus();
  });
}
$('monitor').onchange = () => {
  $('stage').focus();
  invoke('switch_monitor', { monitorId: Number($('monitor').value) }).catch(failure);
};
$('frame-rate').onchange = () => {
  $('stage').focus();
  invoke('set_frame_rate', { frameRate: Number($('frame-rate').value) }).catch(failure);
};
$('stage').addEventListener('focus', () => { st.focused = true; renderStatus(); });
$('stage').addEventListener('blur', () => { st.focused = false; renderStatus(); });

// ---- Input ---------------------------------------------------------------------------------------

// ---- The native view -------------------------------------------------------------------------------

let native = false;
let areaSent = null;
let streamInfo = '';

// The stage in the webview's device pixels, while a session is shown.
function stageArea() {
  if (!session || $('session-view').classList.contains('hidden')) return null;
  // Inside the stage's focus border, which stays visible around the picture.
  const stage = $('stage');
  const r = stage.getBoundingClientRect();
  const dpr = window.devicePixelRatio || 1;
  const x = r.left + stage.clientLeft;
  const y = r.top + stage.clientTop;
  return {
    x: x * dpr,
    y: y * dpr,
    width: stage.clientWidth * dpr,
    height: stage.clientHeight * dpr,
    scale: sizing,
    scrollX: stage.scrollLeft * dpr,
    scrollY: stage.scrollTop * dpr,
  };
}

// Tells the native view where the stage is whenever that changes (layout, window size, banners).
function sendArea() {
  const area = native ? stageArea() : null;
  const key = JSON.stringify(area);
  if (key === areaSent) return;
  areaSent = key;
  invoke('view_area', { area }).catch(() => {});
}

// The native view's counters, into `window.__view` (tests read them there).
async function pollNative() {
  const s = await invoke('view_state').catch(() => null);
  if (!s) return;
  const { frames, decoded, decodeErrors, drawErrors, skipped, decodeMs, drawMs, window: xid } = s;
  Object.assign(view, { frames, decoded, decodeErrors, drawErrors, skipped, decodeMs, drawMs, window: xid });
  if (frames > 0) $('waiting').classList.add('hidden');
}

setInterval(() => {
  if (!native) return;
  sendArea();
  if (session) pollNative();
}, 200);

// What is drawn, beside what was chosen, once a second.
let lastCount = { frames: 0, at: performance.now() };
setInterval(() => {
  const now = performance.now();
  const fps = ((view.frames - lastCount.frames) * 1000) / (now - lastCount.at);
  lastCount = { frames: view.frames, at: now };
  if (session && streamInfo) $('stats').textContent = `${streamInfo} · ${Math.max(0, fps).toFixed(0)} fps drawn`;
}, 1000);

function remotePoint(e) {
  const r = canvas.getBoundingClientRect();
  const x = Math.round(((e.clientX - r.left) * remote.width) / r.width);
  const y = Math.round(((e.clientY - r.top) * remote.height) / r.height);
  return { x: Math.min(Math.max(x, 0), remote.width - 1), y: Math.min(Math.max(y, 0), remote.height - 1) };
}

// With the native view, the webview point (the app maps it); with the page's canvas, the remote pixel.
function mouse(action, e, extra) {
  if (!session) return;
  const dpr = window.devicePixelRatio || 1;
  const at = native ? { pageX: e.clientX * dpr, pageY: e.clientY * dpr } : remotePoint(e);
  invoke('mouse', { event: { action, button: e.button || 0, ...at, ...extra } }).catch(() => {});
}

// Events over the stage: all of it with the native view (the app knows where the picture is), the
// canvas only without.
const surface = $('stage');
const onPicture = (e) => native || e.target === canvas;

// Moves are coalesced to one per animation frame.
let pendingMove = null;
surface.addEventListener('mousemove', (e) => {
  if (!onPicture(e)) return;
  if (pendingMove === null) requestAnimationFrame(() => { mouse('move', pendingMove); pendingMove = null; });
  pendingMove = e;
});
surface.addEventListener('mousedown', (e) => { if (!onPicture(e)) return; e.preventDefault(); surface.focus(); mouse('down', e); });
surface.addEventListener('mouseup', (e) => { if (!onPicture(e)) return; e.preventDefault(); mouse('up', e); });
surface.addEventListener('contextmenu', (e) => e.preventDefault());
surface.addEventListener('wheel', (e) => {
  if (!onPicture(e)) return;
  e.preventDefault();
  mouse('wheel', e, { wheelX: Math.sign(e.deltaX), wheelY: Math.sign(e.deltaY) });
}, { passive: false });

function modifiers(e) {
  return (e.shiftKey ? 1 : 0) | (e.ctrlKey ? 2 : 0) | (e.altKey ? 4 : 0) | (e.metaKey ? 8 : 0);
}
for (const [type, down] of [['keydown', true], ['keyup', false]]) {
  $('stage').addEventListener(type, (e) => {
    if (!session || !e.code) return;
    e.preventDefault();
    invoke('key', { code: e.code, down, modifiers: modifiers(e) }).catch(() => {});
  });
}

window.addEventListener('resize', () => { if (session) fitCanvas(); });
